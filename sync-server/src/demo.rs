//! The demo banner: seeded grids, people, producers and visits, clearly marked as demo data.

use gridsync_core::model::{Record, Role};

use crate::admin::{self, AdminError};
use crate::dataset::{generate, Dataset, DatasetSpec};
use crate::storage::Storage;

/// An enrolment code printed for the demo.
#[derive(Debug, Clone)]
pub struct DemoCode {
    /// Role of the person.
    pub role: Role,
    /// Person id.
    pub person_id: String,
    /// Person name.
    pub name: String,
    /// The code.
    pub code: String,
}

/// A desk sign-in printed for the demo (a fresh password at every start).
#[derive(Debug, Clone)]
pub struct DemoDesk {
    /// Role of the person.
    pub role: Role,
    /// Person id.
    pub person_id: String,
    /// Person name.
    pub name: String,
    /// Username.
    pub username: String,
    /// Password (random, shown once, stored only as its argon2id hash).
    pub password: String,
}

/// Loads a dataset into storage: grids, people, then producers and visits through the push path.
pub fn load_dataset(storage: &dyn Storage, data: &Dataset) -> Result<(), AdminError> {
    storage.import_grids(&data.grids)?;
    for p in &data.people {
        admin::add_person(storage, p)?;
    }
    let admin_person = data
        .person(Role::Admin)
        .ok_or_else(|| AdminError::Invalid("dataset has no admin".into()))?
        .clone();
    let producers: Vec<Record> = data
        .producers
        .iter()
        .cloned()
        .map(Record::Producer)
        .collect();
    admin::seed_records(storage, &admin_person, &producers)?;
    let visits: Vec<Record> = data.visits.iter().cloned().map(Record::Visit).collect();
    admin::seed_records(storage, &admin_person, &visits)?;
    Ok(())
}

/// Seeds the demo banner (once), issues fresh codes for a liaison and a supervisor, and sets
/// fresh desk passwords for the county reviewer and the supervisor.
pub fn seed_demo(storage: &dyn Storage) -> Result<(Vec<DemoCode>, Vec<DemoDesk>), AdminError> {
    let data = generate(&DatasetSpec::demo());
    if storage.person(&data.people[0].id)?.is_none() {
        load_dataset(storage, &data)?;
    }
    let mut codes = Vec::new();
    for role in [Role::Liaison, Role::Supervisor] {
        let p = data
            .person(role)
            .ok_or_else(|| AdminError::Invalid("demo person missing".into()))?;
        let issued = admin::issue_code(storage, &p.id, "demo", 72)?;
        codes.push(DemoCode {
            role,
            person_id: p.id.clone(),
            name: p.name.clone(),
            code: issued.code,
        });
    }
    let mut desks = Vec::new();
    for (role, username) in [
        (Role::CountyReviewer, "demo-county"),
        (Role::Supervisor, "demo-supervisor"),
    ] {
        let p = data
            .person(role)
            .ok_or_else(|| AdminError::Invalid("demo person missing".into()))?;
        let password = format!("demo-{}", crate::auth::new_code());
        admin::set_desk_password(storage, &p.id, username, &password, "demo")?;
        desks.push(DemoDesk {
            role,
            person_id: p.id.clone(),
            name: p.name.clone(),
            username: username.into(),
            password,
        });
    }
    Ok((codes, desks))
}
