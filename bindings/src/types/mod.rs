//! The core's records and enums mirrored as uniffi Records and Enums, with conversions.
//!
//! The mirrors stay close to the core's types; where a shape does not cross the FFI well
//! (maps keyed by enums, tuple variants, string columns of the query tables) it is
//! reshaped here and nowhere else. One file per concern: people and grids, producers,
//! checklist templates, visits, queries, sync.

/// Declares a field-less enum mirroring a core enum, with conversions both ways.
macro_rules! mirror_enum {
    (
        $(#[$meta:meta])*
        $name:ident = $core:ident { $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl From<$core> for $name {
            fn from(x: $core) -> Self {
                match x {
                    $( $core::$variant => $name::$variant ),+
                }
            }
        }

        impl From<$name> for $core {
            fn from(x: $name) -> Self {
                match x {
                    $( $name::$variant => $core::$variant ),+
                }
            }
        }
    };
}

mod attachment;
mod people;
mod producer;
mod query;
mod sync;
mod template;
mod visit;

pub use attachment::*;
pub use people::*;
pub use producer::*;
pub use query::*;
pub use sync::*;
pub use template::*;
pub use visit::*;
