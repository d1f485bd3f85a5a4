-- Server schema version 5 (SQLite): sign-in for desk staff (the web console under /desk/).
-- Passwords are stored only as argon2id PHC strings, session and link tokens only as the
-- SHA-256 of the token (hex): a copy of the database signs nobody in.
CREATE TABLE desk_accounts (
    person_id       TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    changed_at_ms   INTEGER NOT NULL,
    -- Failed sign-ins since the last success or lock.
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER
);
CREATE TABLE desk_sessions (
    token_hash    TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    -- The CSRF token of the session's forms (not a credential on its own).
    csrf_token    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    -- Absolute end of the session; the idle limit counts from last_seen_ms.
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX desk_sessions_person ON desk_sessions(person_id);
-- One-time links that let a person set their own password.
CREATE TABLE desk_links (
    token_hash    TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
);
