//! Teams and their members, custom roles, and grants of stacks to teams and users. Each
//! column list is spelled once, next to its decoder.

use super::people::{get_member, get_org};
use super::{Row, Tx, p};
use crate::store::access::*;
use crate::store::*;

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

pub(super) fn roles_by_ids(tx: &mut dyn Tx, ids: &[String]) -> StoreResult<Vec<RoleRow>> {
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
