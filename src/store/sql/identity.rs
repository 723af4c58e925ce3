//! Users, organizations, members, teams, custom roles, stack grants, trust policies and
//! login sessions. Each column list is spelled once, next to its decoder.

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

fn get_member(tx: &mut dyn Tx, org: &str, login: &str) -> StoreResult<Option<MemberRow>> {
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

// --------------------------------------------------------------------------- teams

const TEAM_COLS: &str = "org, name, display_name, description, role_id, created_at";

fn team(r: &Row) -> StoreResult<TeamRow> {
    Ok(TeamRow {
        org: r.text(0)?,
        name: r.text(1)?,
        display_name: r.text(2)?,
        description: r.text(3)?,
        role_id: r.opt_text(4)?,
        created_at: r.i64(5)?,
    })
}

pub fn create_team(tx: &mut dyn Tx, t: &TeamRow) -> StoreResult<()> {
    if get_org(tx, &t.org)?.is_none() {
        return Err(StoreError::Conflict(format!("no organization {:?}", t.org)));
    }
    let taken = tx.count(
        "SELECT COUNT(*) FROM teams WHERE org = ?1 AND name = ?2",
        p![&t.org, &t.name],
    )?;
    if taken > 0 {
        return Err(StoreError::Conflict(format!("team {:?} exists", t.name)));
    }
    tx.exec(
        "INSERT INTO teams (org, name, display_name, description, role_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![
            &t.org,
            &t.name,
            &t.display_name,
            &t.description,
            &t.role_id,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn update_team(tx: &mut dyn Tx, t: &TeamRow) -> StoreResult<bool> {
    Ok(tx.exec(
        "UPDATE teams SET display_name = ?3, description = ?4 WHERE org = ?1 AND name = ?2",
        p![&t.org, &t.name, &t.display_name, &t.description],
    )? > 0)
}

pub fn delete_team(tx: &mut dyn Tx, org: &str, name: &str, now: i64) -> StoreResult<bool> {
    super::tokens::revoke(
        tx,
        &TokenSelector::Team {
            org: org.to_owned(),
            team: name.to_owned(),
        },
        now,
    )?;
    tx.exec(
        "DELETE FROM stack_grants WHERE kind = 'team' AND grantee = ?2 \
         AND stack_id IN (SELECT id FROM stacks WHERE org = ?1)",
        p![org, name],
    )?;
    tx.exec(
        "DELETE FROM team_members WHERE org = ?1 AND team = ?2",
        p![org, name],
    )?;
    Ok(tx.exec(
        "DELETE FROM teams WHERE org = ?1 AND name = ?2",
        p![org, name],
    )? > 0)
}

pub fn get_team(
    tx: &mut dyn Tx,
    org: &str,
    name: &str,
) -> StoreResult<Option<(TeamRow, Vec<TeamMember>)>> {
    let Some(t) = tx
        .one(
            &format!("SELECT {TEAM_COLS} FROM teams WHERE org = ?1 AND name = ?2"),
            p![org, name],
        )?
        .map(|r| team(&r))
        .transpose()?
    else {
        return Ok(None);
    };
    let members = tx
        .query(
            "SELECT tm.login, u.name, tm.role FROM team_members tm \
             JOIN users u ON u.login = tm.login \
             WHERE tm.org = ?1 AND tm.team = ?2 ORDER BY tm.login",
            p![org, name],
        )?
        .iter()
        .map(|r| {
            Ok(TeamMember {
                login: r.text(0)?,
                name: r.text(1)?,
                role: r.text(2)?,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(Some((t, members)))
}

pub fn list_teams(tx: &mut dyn Tx, org: &str) -> StoreResult<Vec<TeamRow>> {
    tx.query(
        &format!("SELECT {TEAM_COLS} FROM teams WHERE org = ?1 ORDER BY name"),
        p![org],
    )?
    .iter()
    .map(team)
    .collect()
}

pub fn set_team_member(
    tx: &mut dyn Tx,
    org: &str,
    team: &str,
    login: &str,
    role: &str,
) -> StoreResult<bool> {
    if get_member(tx, org, login)?.is_none() {
        return Err(StoreError::Conflict(format!(
            "{login:?} is not a member of {org:?}"
        )));
    }
    let exists = tx.count(
        "SELECT COUNT(*) FROM teams WHERE org = ?1 AND name = ?2",
        p![org, team],
    )?;
    if exists == 0 {
        return Ok(false);
    }
    tx.exec(
        "INSERT INTO team_members (org, team, login, role) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (org, team, login) DO UPDATE SET role = excluded.role",
        p![org, team, login, role],
    )?;
    Ok(true)
}

pub fn remove_team_member(
    tx: &mut dyn Tx,
    org: &str,
    team: &str,
    login: &str,
) -> StoreResult<bool> {
    Ok(tx.exec(
        "DELETE FROM team_members WHERE org = ?1 AND team = ?2 AND login = ?3",
        p![org, team, login],
    )? > 0)
}

// --------------------------------------------------------------------------- roles

const ROLE_COLS: &str = "id, org, name, description, ux_purpose, details, version, is_default, \
     created_at, modified_at";

fn role(r: &Row) -> StoreResult<RoleRow> {
    Ok(RoleRow {
        id: r.text(0)?,
        org: r.text(1)?,
        name: r.text(2)?,
        description: r.text(3)?,
        ux_purpose: r.text(4)?,
        details: r.text(5)?,
        version: r.i64(6)?,
        is_default: r.bool(7)?,
        created_at: r.i64(8)?,
        modified_at: r.i64(9)?,
    })
}

fn role_name_taken(tx: &mut dyn Tx, org: &str, name: &str, except: &str) -> StoreResult<bool> {
    Ok(tx.count(
        "SELECT COUNT(*) FROM roles WHERE org = ?1 AND LOWER(name) = LOWER(?2) AND id <> ?3",
        p![org, name, except],
    )? > 0)
}

pub fn create_role(tx: &mut dyn Tx, r: &RoleRow) -> StoreResult<()> {
    if get_org(tx, &r.org)?.is_none() {
        return Err(StoreError::Conflict(format!("no organization {:?}", r.org)));
    }
    if role_name_taken(tx, &r.org, &r.name, &r.id)? {
        return Err(StoreError::Conflict(format!("role {:?} exists", r.name)));
    }
    tx.exec(
        &format!(
            "INSERT INTO roles ({ROLE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        p![
            &r.id,
            &r.org,
            &r.name,
            &r.description,
            &r.ux_purpose,
            &r.details,
            r.version,
            r.is_default,
            r.created_at,
            r.modified_at
        ],
    )?;
    Ok(())
}

pub fn update_role(tx: &mut dyn Tx, r: &RoleRow) -> StoreResult<bool> {
    if role_name_taken(tx, &r.org, &r.name, &r.id)? {
        return Err(StoreError::Conflict(format!("role {:?} exists", r.name)));
    }
    Ok(tx.exec(
        "UPDATE roles SET name = ?3, description = ?4, details = ?5, version = version + 1, \
         modified_at = ?6 WHERE org = ?1 AND id = ?2",
        p![
            &r.org,
            &r.id,
            &r.name,
            &r.description,
            &r.details,
            r.modified_at
        ],
    )? > 0)
}

pub fn get_role(tx: &mut dyn Tx, org: &str, id: &str) -> StoreResult<Option<RoleRow>> {
    tx.one(
        &format!("SELECT {ROLE_COLS} FROM roles WHERE org = ?1 AND id = ?2"),
        p![org, id],
    )?
    .map(|r| role(&r))
    .transpose()
}

pub fn list_roles(tx: &mut dyn Tx, org: &str, purpose: Option<&str>) -> StoreResult<Vec<RoleRow>> {
    tx.query(
        &format!(
            "SELECT {ROLE_COLS} FROM roles WHERE org = ?1 \
             AND (CAST(?2 AS TEXT) IS NULL OR ux_purpose = ?2) ORDER BY created_at, id"
        ),
        p![org, purpose],
    )?
    .iter()
    .map(role)
    .collect()
}

pub fn delete_role(tx: &mut dyn Tx, org: &str, id: &str, force: bool) -> StoreResult<RoleDelete> {
    if get_role(tx, org, id)?.is_none() {
        return Ok(RoleDelete::NotFound);
    }
    let uses = tx.count(
        "SELECT (SELECT COUNT(*) FROM org_members WHERE org = ?1 AND role_id = ?2) \
              + (SELECT COUNT(*) FROM teams WHERE org = ?1 AND role_id = ?2) \
              + (SELECT COUNT(*) FROM tokens WHERE org = ?1 AND role_id = ?2 \
                 AND revoked_at IS NULL)",
        p![org, id],
    )?;
    if uses > 0 && !force {
        return Ok(RoleDelete::InUse);
    }
    tx.exec(
        "UPDATE org_members SET role_id = NULL WHERE org = ?1 AND role_id = ?2",
        p![org, id],
    )?;
    tx.exec(
        "UPDATE teams SET role_id = NULL WHERE org = ?1 AND role_id = ?2",
        p![org, id],
    )?;
    tx.exec("DELETE FROM roles WHERE org = ?1 AND id = ?2", p![org, id])?;
    Ok(RoleDelete::Deleted)
}

pub fn set_team_role(
    tx: &mut dyn Tx,
    org: &str,
    team: &str,
    role_id: Option<&str>,
) -> StoreResult<bool> {
    Ok(tx.exec(
        "UPDATE teams SET role_id = ?3 WHERE org = ?1 AND name = ?2",
        p![org, team, role_id],
    )? > 0)
}

fn roles_by_ids(tx: &mut dyn Tx, ids: &[String]) -> StoreResult<Vec<RoleRow>> {
    let mut out = Vec::new();
    for id in ids {
        if out.iter().any(|r: &RoleRow| &r.id == id) {
            continue;
        }
        if let Some(r) = tx.one(
            &format!("SELECT {ROLE_COLS} FROM roles WHERE id = ?1"),
            p![id],
        )? {
            out.push(role(&r)?);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------- grants

pub fn grant(
    tx: &mut dyn Tx,
    stack_id: i64,
    grantee: &Grantee,
    permission: StackPermission,
) -> StoreResult<()> {
    let (kind, name) = match grantee {
        Grantee::User(u) => ("user", u),
        Grantee::Team(t) => ("team", t),
    };
    if permission == StackPermission::None {
        tx.exec(
            "DELETE FROM stack_grants WHERE stack_id = ?1 AND kind = ?2 AND grantee = ?3",
            p![stack_id, kind, name],
        )?;
    } else {
        tx.exec(
            "INSERT INTO stack_grants (stack_id, kind, grantee, permission) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (stack_id, kind, grantee) DO UPDATE SET permission = excluded.permission",
            p![stack_id, kind, name, permission.code()],
        )?;
    }
    Ok(())
}

pub fn stack_grants(tx: &mut dyn Tx, stack_id: i64) -> StoreResult<Vec<StackGrant>> {
    tx.query(
        "SELECT kind, grantee, permission FROM stack_grants WHERE stack_id = ?1 \
         ORDER BY kind, grantee",
        p![stack_id],
    )?
    .iter()
    .map(|r| {
        let (kind, name, code) = (r.text(0)?, r.text(1)?, r.i64(2)?);
        Ok(StackGrant {
            grantee: if kind == "team" {
                Grantee::Team(name)
            } else {
                Grantee::User(name)
            },
            permission: StackPermission::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown permission {code}")))?,
        })
    })
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

// ------------------------------------------------------- trust policies, sessions

const POLICY_COLS: &str = "id, org, issuer, audience, rules, token_kind, team, login, \
     max_expiration, created_at";

fn policy(r: &Row) -> StoreResult<TrustPolicyRow> {
    let kind = r.text(5)?;
    Ok(TrustPolicyRow {
        id: r.text(0)?,
        org: r.text(1)?,
        issuer: r.text(2)?,
        audience: r.text(3)?,
        rules: r.text(4)?,
        token_kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind:?}")))?,
        team: r.opt_text(6)?,
        login: r.opt_text(7)?,
        max_expiration: r.i64(8)?,
        created_at: r.i64(9)?,
    })
}

pub fn create_trust_policy(tx: &mut dyn Tx, t: &TrustPolicyRow) -> StoreResult<()> {
    tx.exec(
        &format!(
            "INSERT INTO trust_policies ({POLICY_COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        p![
            &t.id,
            &t.org,
            &t.issuer,
            &t.audience,
            &t.rules,
            t.token_kind.as_str(),
            &t.team,
            &t.login,
            t.max_expiration,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn list_trust_policies(tx: &mut dyn Tx, org: Option<&str>) -> StoreResult<Vec<TrustPolicyRow>> {
    tx.query(
        &format!(
            "SELECT {POLICY_COLS} FROM trust_policies \
             WHERE CAST(?1 AS TEXT) IS NULL OR org = ?1 ORDER BY created_at, id"
        ),
        p![org],
    )?
    .iter()
    .map(policy)
    .collect()
}

pub fn delete_trust_policy(tx: &mut dyn Tx, id: &str) -> StoreResult<bool> {
    Ok(tx.exec("DELETE FROM trust_policies WHERE id = ?1", p![id])? > 0)
}

pub fn create_login_session(tx: &mut dyn Tx, s: &LoginSession) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO login_sessions (id, nonce, pkce_verifier, cli_port, cli_nonce, description, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        p![
            &s.id,
            &s.nonce,
            &s.pkce_verifier,
            s.cli_port,
            &s.cli_nonce,
            &s.description,
            s.created_at,
            s.expires_at
        ],
    )?;
    // Abandoned logins do not pile up.
    tx.exec(
        "DELETE FROM login_sessions WHERE expires_at < ?1",
        p![s.created_at],
    )?;
    Ok(())
}

pub fn take_login_session(
    tx: &mut dyn Tx,
    id: &str,
    now: i64,
) -> StoreResult<Option<LoginSession>> {
    let Some(r) = tx.one(
        &format!(
            "SELECT id, nonce, pkce_verifier, cli_port, cli_nonce, description, created_at, \
             expires_at FROM login_sessions WHERE id = ?1{}",
            tx.for_update()
        ),
        p![id],
    )?
    else {
        return Ok(None);
    };
    tx.exec("DELETE FROM login_sessions WHERE id = ?1", p![id])?;
    let s = LoginSession {
        id: r.text(0)?,
        nonce: r.text(1)?,
        pkce_verifier: r.text(2)?,
        cli_port: r.i64(3)?,
        cli_nonce: r.text(4)?,
        description: r.text(5)?,
        created_at: r.i64(6)?,
        expires_at: r.i64(7)?,
    };
    Ok((s.expires_at > now).then_some(s))
}
