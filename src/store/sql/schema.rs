//! Schema steps written once for both databases (from step 5 on; steps 1–4 predate this and
//! live in each backend's `migrate.rs`). `{int}` becomes INTEGER (SQLite) or BIGINT
//! (PostgreSQL), `{blob}` BLOB or BYTEA, `{serial}` an integer key the database numbers.
//! Steps are append-only: never edit a released one.

use super::Dialect;

/// Steps 5 and on.
pub const SHARED_STEPS: &[&str] = &[
    // 5: identity and access — users, organizations, members, teams, custom roles, per-stack
    // grants, token kinds, OIDC trust policies and browser login sessions.
    r#"
    CREATE TABLE users (
        login         TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        email         TEXT NOT NULL DEFAULT '',
        created_at    {int} NOT NULL,
        disabled_at   {int},
        issuer        TEXT,
        subject       TEXT,
        last_login_at {int}
    );
    CREATE UNIQUE INDEX users_by_subject ON users (issuer, subject);

    CREATE TABLE orgs (
        name               TEXT PRIMARY KEY,
        created_at         {int} NOT NULL,
        default_permission {int} NOT NULL DEFAULT 102
    );

    CREATE TABLE org_members (
        org        TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
        login      TEXT NOT NULL REFERENCES users (login) ON DELETE CASCADE,
        role       TEXT NOT NULL,
        role_id    TEXT,
        created_at {int} NOT NULL,
        PRIMARY KEY (org, login)
    );
    CREATE INDEX org_members_by_login ON org_members (login);

    CREATE TABLE teams (
        org          TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        display_name TEXT NOT NULL,
        description  TEXT NOT NULL,
        role_id      TEXT,
        created_at   {int} NOT NULL,
        PRIMARY KEY (org, name)
    );

    CREATE TABLE team_members (
        org   TEXT NOT NULL,
        team  TEXT NOT NULL,
        login TEXT NOT NULL REFERENCES users (login) ON DELETE CASCADE,
        role  TEXT NOT NULL,
        PRIMARY KEY (org, team, login),
        FOREIGN KEY (org, team) REFERENCES teams (org, name) ON DELETE CASCADE
    );
    CREATE INDEX team_members_by_login ON team_members (login);

    CREATE TABLE roles (
        id          TEXT PRIMARY KEY,
        org         TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        ux_purpose  TEXT NOT NULL,
        details     TEXT NOT NULL,
        version     {int} NOT NULL,
        is_default  {int} NOT NULL DEFAULT 0,
        created_at  {int} NOT NULL,
        modified_at {int} NOT NULL,
        UNIQUE (org, name)
    );

    -- kind: 'user' (grantee = login) or 'team' (grantee = a team of the stack's org).
    CREATE TABLE stack_grants (
        stack_id   {int} NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        grantee    TEXT NOT NULL,
        permission {int} NOT NULL,
        PRIMARY KEY (stack_id, kind, grantee)
    );
    CREATE INDEX stack_grants_by_grantee ON stack_grants (kind, grantee);

    ALTER TABLE stacks ADD COLUMN created_by TEXT;

    ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'personal';
    ALTER TABLE tokens ADD COLUMN org TEXT;
    ALTER TABLE tokens ADD COLUMN team TEXT;
    ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN admin {int} NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN role_id TEXT;
    ALTER TABLE tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN upstream {blob};
    CREATE INDEX tokens_by_org ON tokens (org, team);

    -- The users earlier versions knew only as the owners of tokens.
    INSERT INTO users (login, name, created_at)
        SELECT user_name, user_name, MIN(created_at) FROM tokens GROUP BY user_name;

    CREATE TABLE trust_policies (
        id             TEXT PRIMARY KEY,
        org            TEXT NOT NULL,
        issuer         TEXT NOT NULL,
        audience       TEXT NOT NULL,
        rules          TEXT NOT NULL,
        token_kind     TEXT NOT NULL,
        team           TEXT,
        login          TEXT,
        max_expiration {int} NOT NULL,
        created_at     {int} NOT NULL
    );

    CREATE TABLE login_sessions (
        id            TEXT PRIMARY KEY,
        nonce         TEXT NOT NULL,
        pkce_verifier TEXT NOT NULL,
        cli_port      {int} NOT NULL,
        cli_nonce     TEXT NOT NULL,
        description   TEXT NOT NULL,
        created_at    {int} NOT NULL,
        expires_at    {int} NOT NULL
    );
    "#,
    // 6: the audit log. `org` is NULL for events no organization owns (a credential that
    // matched nothing); `id` orders events and is the continuation of a listing.
    r#"
    CREATE TABLE audit_events (
        id              {serial},
        org             TEXT,
        at              {int} NOT NULL,
        event           TEXT NOT NULL,
        description     TEXT NOT NULL,
        user_login      TEXT NOT NULL,
        user_name       TEXT NOT NULL,
        source_ip       TEXT NOT NULL,
        token_id        TEXT,
        token_name      TEXT,
        req_org_admin   {int} NOT NULL DEFAULT 0,
        req_stack_admin {int} NOT NULL DEFAULT 0,
        auth_failure    {int} NOT NULL DEFAULT 0
    );
    CREATE INDEX audit_events_by_org ON audit_events (org, id);
    CREATE INDEX audit_events_by_time ON audit_events (at);
    "#,
    // 7: webhooks. `stack_id` NULL is an organization's hook. The outbox holds one row per
    // (event, hook) to deliver, written in the transaction of the change that raised the
    // event; each attempt at sending one is recorded with its own id.
    r#"
    CREATE TABLE webhooks (
        id           {serial},
        org          TEXT NOT NULL,
        stack_id     {int} REFERENCES stacks (id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        display_name TEXT NOT NULL,
        payload_url  TEXT NOT NULL,
        active       {int} NOT NULL,
        format       TEXT NOT NULL,
        filters      TEXT NOT NULL,
        groups       TEXT NOT NULL,
        secret       {blob},
        created_at   {int} NOT NULL
    );
    CREATE UNIQUE INDEX webhooks_by_name ON webhooks (org, COALESCE(stack_id, 0), name);

    CREATE TABLE webhook_outbox (
        id         {serial},
        hook_id    {int} NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at {int} NOT NULL,
        state      TEXT NOT NULL,
        attempts   {int} NOT NULL DEFAULT 0,
        due_at     {int} NOT NULL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (state, due_at);
    CREATE INDEX webhook_outbox_by_hook ON webhook_outbox (hook_id);

    CREATE TABLE webhook_attempts (
        seq              {serial},
        id               TEXT NOT NULL UNIQUE,
        outbox_id        {int} NOT NULL,
        hook_id          {int} NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        at               {int} NOT NULL,
        kind             TEXT NOT NULL,
        payload          TEXT NOT NULL,
        request_url      TEXT NOT NULL,
        request_headers  TEXT NOT NULL,
        duration_ms      {int},
        response_code    {int},
        response_headers TEXT,
        response_body    TEXT
    );
    CREATE INDEX webhook_attempts_by_hook ON webhook_attempts (hook_id, at);
    "#,
    // 8 (SQLite only): a version's state becomes the row's last column. SQLite then keeps a
    // `zeroblob(n)` placeholder unexpanded and the state is written in place through
    // incremental BLOB I/O, instead of being copied twice in memory (once bound, once into the
    // record). PostgreSQL's column order changes nothing there.
    r#"{sqlite-only}
    CREATE TABLE stack_versions_v8 (
        stack_id       INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
        version        INTEGER NOT NULL,
        sha256         TEXT NOT NULL,
        size           INTEGER NOT NULL,
        resource_count INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        state          BLOB NOT NULL,
        PRIMARY KEY (stack_id, version)
    );
    INSERT INTO stack_versions_v8
        (stack_id, version, sha256, size, resource_count, created_at, state)
        SELECT stack_id, version, sha256, size, resource_count, created_at, state
        FROM stack_versions;
    DROP TABLE stack_versions;
    ALTER TABLE stack_versions_v8 RENAME TO stack_versions;
    "#,
];

/// Marks a step that only SQLite runs; PostgreSQL records its number and does nothing.
const SQLITE_ONLY: &str = "{sqlite-only}";

/// A shared step in the given dialect.
pub fn render(step: &str, dialect: Dialect) -> String {
    let step = match (step.strip_prefix(SQLITE_ONLY), dialect) {
        (Some(_), Dialect::Postgres) => return "SELECT 1;".to_owned(),
        (Some(rest), Dialect::Sqlite) => rest,
        (None, _) => step,
    };
    let (int, blob, serial) = match dialect {
        Dialect::Sqlite => ("INTEGER", "BLOB", "INTEGER PRIMARY KEY"),
        Dialect::Postgres => (
            "BIGINT",
            "BYTEA",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ),
    };
    step.replace("{serial}", serial)
        .replace("{int}", int)
        .replace("{blob}", blob)
}
