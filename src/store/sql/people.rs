//! Users, organizations and their members, and what a credential resolves to (the
//! principal: a token's owner with memberships). Teams, roles and grants are in `teams.rs`,
//! trust policies and login sessions in `logins.rs`. Each column list is spelled once, next to
//! its decoder.

use super::teams::roles_by_ids;
use super::{Row, Tx, p};
use crate::store::access::*;
use crate::store::*;

// ------------------------------------------------------------------------------ users

const USER_COLS: &str =
    "login, name, email, created_at, disabled_at, issuer, subject, last_login_at";

fn user(r: &Row) -> StoreResult<UserRow> {
    Ok(UserRow {
        login: r.text(0)?,
        name: r.text(1)?,
        email: r.text(2)?,
        created_at: r.i64(3)?,
        disabled_at: r.opt_i64(4)?,
        issuer: r.opt_text(5)?,
        subject: r.opt_text(6)?,
        last_login_at: r.opt_i64(7)?,
    })
}

pub fn get_user(tx: &mut dyn Tx, login: &str) -> StoreResult<Option<UserRow>> {
    tx.one(
        &format!("SELECT {USER_COLS} FROM users WHERE login = ?1"),
        p![login],
    )?
    .map(|r| user(&r))
    .transpose()
}

pub fn user_by_subject(
    tx: &mut dyn Tx,
    issuer: &str,
    subject: &str,
) -> StoreResult<Option<UserRow>> {
    tx.one(
        &format!("SELECT {USER_COLS} FROM users WHERE issuer = ?1 AND subject = ?2"),
        p![issuer, subject],
    )?
    .map(|r| user(&r))
    .transpose()
}

pub fn upsert_user(tx: &mut dyn Tx, u: &NewUser) -> StoreResult<UserRow> {
    let login_at = u.logged_in.then_some(u.now);
    if get_user(tx, &u.login)?.is_some() {
        tx.exec(
            "UPDATE users SET name = ?2, email = ?3, \
             issuer = COALESCE(CAST(?4 AS TEXT), issuer), \
             subject = COALESCE(CAST(?5 AS TEXT), subject), \
             last_login_at = COALESCE(?6, last_login_at) WHERE login = ?1",
            p![&u.login, &u.name, &u.email, &u.issuer, &u.subject, login_at],
        )?;
    } else {
        tx.exec(
            "INSERT INTO users (login, name, email, created_at, issuer, subject, last_login_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            p![
                &u.login, &u.name, &u.email, u.now, &u.issuer, &u.subject, login_at
            ],
        )?;
    }
    get_user(tx, &u.login)?.ok_or_else(|| StoreError::Corrupt("upserted user vanished".into()))
}

pub fn list_users(tx: &mut dyn Tx) -> StoreResult<Vec<UserRow>> {
    tx.query(
        &format!("SELECT {USER_COLS} FROM users ORDER BY login"),
        &[],
    )?
    .iter()
    .map(user)
    .collect()
}

pub fn set_user_disabled(tx: &mut dyn Tx, login: &str, at: Option<i64>) -> StoreResult<bool> {
    Ok(tx.exec(
        "UPDATE users SET disabled_at = ?2 WHERE login = ?1",
        p![login, at],
    )? > 0)
}

// ------------------------------------------------------------------ organizations

const ORG_COLS: &str = "name, created_at, default_permission";

fn org(r: &Row) -> StoreResult<OrgRow> {
    let code = r.i64(2)?;
    Ok(OrgRow {
        name: r.text(0)?,
        created_at: r.i64(1)?,
        default_permission: StackPermission::from_code(code)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown permission {code}")))?,
    })
}

pub fn get_org(tx: &mut dyn Tx, name: &str) -> StoreResult<Option<OrgRow>> {
    tx.one(
        &format!("SELECT {ORG_COLS} FROM orgs WHERE name = ?1"),
        p![name],
    )?
    .map(|r| org(&r))
    .transpose()
}

pub fn ensure_org(tx: &mut dyn Tx, name: &str, now: i64) -> StoreResult<OrgRow> {
    tx.exec(
        "INSERT INTO orgs (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        p![name, now],
    )?;
    get_org(tx, name)?.ok_or_else(|| StoreError::Corrupt("created org vanished".into()))
}

pub fn list_orgs(tx: &mut dyn Tx) -> StoreResult<Vec<OrgRow>> {
    tx.query(&format!("SELECT {ORG_COLS} FROM orgs ORDER BY name"), &[])?
        .iter()
        .map(org)
        .collect()
}

pub fn set_org_default_permission(
    tx: &mut dyn Tx,
    name: &str,
    permission: StackPermission,
) -> StoreResult<bool> {
    Ok(tx.exec(
        "UPDATE orgs SET default_permission = ?2 WHERE name = ?1",
        p![name, permission.code()],
    )? > 0)
}

// ------------------------------------------------------------------------ members

const MEMBER_COLS: &str = "m.org, m.login, u.name, u.email, m.role, m.role_id, m.created_at";

fn member(r: &Row) -> StoreResult<MemberRow> {
    let role = r.text(4)?;
    Ok(MemberRow {
        org: r.text(0)?,
        login: r.text(1)?,
        name: r.text(2)?,
        email: r.text(3)?,
        role: OrgRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown org role {role:?}")))?,
        role_id: r.opt_text(5)?,
        created_at: r.i64(6)?,
    })
}

pub(super) fn get_member(
    tx: &mut dyn Tx,
    org: &str,
    login: &str,
) -> StoreResult<Option<MemberRow>> {
    tx.one(
        &format!(
            "SELECT {MEMBER_COLS} FROM org_members m JOIN users u ON u.login = m.login \
             WHERE m.org = ?1 AND m.login = ?2"
        ),
        p![org, login],
    )?
    .map(|r| member(&r))
    .transpose()
}

pub fn set_member(
    tx: &mut dyn Tx,
    org: &str,
    login: &str,
    role: OrgRole,
    role_id: &Option<Option<String>>,
    now: i64,
) -> StoreResult<MemberRow> {
    if get_user(tx, login)?.is_none() {
        return Err(StoreError::Conflict(format!("no user {login:?}")));
    }
    ensure_org(tx, org, now)?;
    match get_member(tx, org, login)? {
        Some(_) => {
            tx.exec(
                "UPDATE org_members SET role = ?3 WHERE org = ?1 AND login = ?2",
                p![org, login, role.as_str()],
            )?;
        }
        None => {
            tx.exec(
                "INSERT INTO org_members (org, login, role, created_at) VALUES (?1, ?2, ?3, ?4)",
                p![org, login, role.as_str(), now],
            )?;
        }
    }
    if let Some(id) = role_id {
        tx.exec(
            "UPDATE org_members SET role_id = ?3 WHERE org = ?1 AND login = ?2",
            p![org, login, id],
        )?;
    }
    get_member(tx, org, login)?.ok_or_else(|| StoreError::Corrupt("member vanished".into()))
}

pub fn remove_member(tx: &mut dyn Tx, org: &str, login: &str) -> StoreResult<bool> {
    tx.exec(
        "DELETE FROM team_members WHERE org = ?1 AND login = ?2",
        p![org, login],
    )?;
    Ok(tx.exec(
        "DELETE FROM org_members WHERE org = ?1 AND login = ?2",
        p![org, login],
    )? > 0)
}

pub fn list_members(tx: &mut dyn Tx, org: &str) -> StoreResult<Vec<MemberRow>> {
    tx.query(
        &format!(
            "SELECT {MEMBER_COLS} FROM org_members m JOIN users u ON u.login = m.login \
             WHERE m.org = ?1 ORDER BY m.login"
        ),
        p![org],
    )?
    .iter()
    .map(member)
    .collect()
}

// -------------------------------------------------------------------- principals

pub fn memberships(tx: &mut dyn Tx, login: &str) -> StoreResult<Memberships> {
    let memberships = tx
        .query(
            &format!(
                "SELECT {MEMBER_COLS} FROM org_members m JOIN users u ON u.login = m.login \
                 WHERE m.login = ?1 ORDER BY m.org"
            ),
            p![login],
        )?
        .iter()
        .map(member)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut role_ids: Vec<String> = memberships
        .iter()
        .filter_map(|m| m.role_id.clone())
        .collect();
    let mut teams = Vec::new();
    for r in tx.query(
        "SELECT tm.org, tm.team, tm.role, t.role_id FROM team_members tm \
         JOIN teams t ON t.org = tm.org AND t.name = tm.team \
         WHERE tm.login = ?1 ORDER BY tm.org, tm.team",
        p![login],
    )? {
        teams.push((r.text(0)?, r.text(1)?, r.text(2)?));
        if let Some(id) = r.opt_text(3)? {
            role_ids.push(id);
        }
    }
    let roles = roles_by_ids(tx, &role_ids)?;
    let mut orgs = Vec::new();
    for m in &memberships {
        if let Some(o) = get_org(tx, &m.org)? {
            orgs.push(o);
        }
    }
    Ok(Memberships {
        memberships,
        teams,
        roles,
        orgs,
    })
}

pub fn resolve_token(tx: &mut dyn Tx, hash: &[u8]) -> StoreResult<Option<Principal>> {
    let Some(token) = super::tokens::find(tx, hash)? else {
        return Ok(None);
    };
    let mut m = Memberships::default();
    let mut user = None;
    match token.kind {
        TokenKind::Personal | TokenKind::Refresh => {
            user = get_user(tx, &token.user)?;
            m = memberships(tx, &token.user)?;
        }
        TokenKind::Organization | TokenKind::Team => {
            let org = token.org.clone().unwrap_or_default();
            if let Some(o) = get_org(tx, &org)? {
                m.orgs.push(o);
            }
            let mut ids: Vec<String> = token.role_id.iter().cloned().collect();
            if let (TokenKind::Team, Some(team)) = (token.kind, &token.team) {
                m.teams.push((org.clone(), team.clone(), "member".into()));
                if let Some(r) = tx.one(
                    "SELECT role_id FROM teams WHERE org = ?1 AND name = ?2",
                    p![&org, team],
                )? && let Some(id) = r.opt_text(0)?
                {
                    ids.push(id);
                }
            }
            m.roles = roles_by_ids(tx, &ids)?;
        }
    }
    Ok(Some(Principal {
        token,
        user,
        memberships: m.memberships,
        teams: m.teams,
        roles: m.roles,
        orgs: m.orgs,
    }))
}
