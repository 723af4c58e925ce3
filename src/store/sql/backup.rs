//! The logical dump and load of the whole database, table by table, driven by one list of
//! what each table holds ([`TABLES`]): a backup record is a row, its fields named as the
//! columns. Adding a table or a column means one line here.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value as Json};

use super::{Dialect, Param, Tx, Value};
use crate::store::backup::{DumpReport, LoadReport, Merge, Record, Sink, Source};
use crate::store::{StoreError, StoreResult};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
    /// Stored as 0/1, a JSON boolean in the record.
    Bool,
}

use Kind::*;

struct Table {
    /// The record's `table` tag.
    tag: &'static str,
    name: &'static str,
    cols: &'static [(&'static str, Kind)],
    order: &'static str,
}

/// Every table, parents first: a load inserts records in the order a dump wrote them.
const TABLES: &[Table] = &[
    Table {
        tag: "meta",
        name: "meta",
        cols: &[("key", Text), ("value", Blob)],
        order: "key",
    },
    Table {
        tag: "user",
        name: "users",
        cols: &[
            ("login", Text),
            ("name", Text),
            ("email", Text),
            ("created_at", Int),
            ("disabled_at", Int),
            ("issuer", Text),
            ("subject", Text),
            ("last_login_at", Int),
        ],
        order: "login",
    },
    Table {
        tag: "org",
        name: "orgs",
        cols: &[
            ("name", Text),
            ("created_at", Int),
            ("default_permission", Int),
        ],
        order: "name",
    },
    Table {
        tag: "role",
        name: "roles",
        cols: &[
            ("id", Text),
            ("org", Text),
            ("name", Text),
            ("description", Text),
            ("ux_purpose", Text),
            ("details", Text),
            ("version", Int),
            ("is_default", Bool),
            ("created_at", Int),
            ("modified_at", Int),
        ],
        order: "id",
    },
    Table {
        tag: "member",
        name: "org_members",
        cols: &[
            ("org", Text),
            ("login", Text),
            ("role", Text),
            ("role_id", Text),
            ("created_at", Int),
        ],
        order: "org, login",
    },
    Table {
        tag: "team",
        name: "teams",
        cols: &[
            ("org", Text),
            ("name", Text),
            ("display_name", Text),
            ("description", Text),
            ("role_id", Text),
            ("created_at", Int),
        ],
        order: "org, name",
    },
    Table {
        tag: "team_member",
        name: "team_members",
        cols: &[
            ("org", Text),
            ("team", Text),
            ("login", Text),
            ("role", Text),
        ],
        order: "org, team, login",
    },
    Table {
        tag: "trust_policy",
        name: "trust_policies",
        cols: &[
            ("id", Text),
            ("org", Text),
            ("issuer", Text),
            ("audience", Text),
            ("rules", Text),
            ("token_kind", Text),
            ("team", Text),
            ("login", Text),
            ("max_expiration", Int),
            ("created_at", Int),
        ],
        order: "id",
    },
    Table {
        tag: "token",
        name: "tokens",
        cols: &[
            ("id", Text),
            ("user_name", Text),
            ("description", Text),
            ("hash", Blob),
            ("created_at", Int),
            ("expires_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
            ("kind", Text),
            ("org", Text),
            ("team", Text),
            ("name", Text),
            ("admin", Bool),
            ("role_id", Text),
            ("created_by", Text),
            ("upstream", Blob),
        ],
        order: "id",
    },
    Table {
        tag: "stack",
        name: "stacks",
        cols: &[
            ("id", Int),
            ("org", Text),
            ("project", Text),
            ("name", Text),
            ("tags", Text),
            ("created_at", Int),
            ("last_version", Int),
            ("current_version", Int),
            ("active_update", Text),
            ("resource_count", Int),
            ("state_size", Int),
            ("last_update_at", Int),
            ("wrapped_key", Blob),
            ("created_by", Text),
        ],
        order: "id",
    },
    Table {
        tag: "grant",
        name: "stack_grants",
        cols: &[
            ("stack_id", Int),
            ("kind", Text),
            ("grantee", Text),
            ("permission", Int),
        ],
        order: "stack_id, kind, grantee",
    },
    Table {
        tag: "former_name",
        name: "stack_former_names",
        cols: &[
            ("org", Text),
            ("project", Text),
            ("name", Text),
            ("stack_id", Int),
            ("renamed_at", Int),
        ],
        order: "org, project, name",
    },
    Table {
        tag: "version",
        name: "stack_versions",
        cols: &[
            ("stack_id", Int),
            ("version", Int),
            ("state", Blob),
            ("sha256", Text),
            ("size", Int),
            ("resource_count", Int),
            ("created_at", Int),
        ],
        order: "stack_id, version",
    },
    Table {
        tag: "update",
        name: "updates",
        cols: &[
            ("id", Text),
            ("stack_id", Int),
            ("kind", Text),
            ("dry_run", Bool),
            ("status", Text),
            ("version", Int),
            ("base_version", Int),
            ("created_at", Int),
            ("started_at", Int),
            ("ended_at", Int),
            ("lease_hash", Blob),
            ("lease_expires", Int),
            ("journal_version", Int),
            ("author", Text),
            ("message", Text),
            ("environment", Text),
            ("config", Text),
            ("resource_changes", Text),
            ("resource_count", Int),
        ],
        order: "stack_id, created_at, id",
    },
    Table {
        tag: "update_window",
        name: "update_windows",
        cols: &[
            ("update_id", Text),
            ("window_id", Text),
            ("seq", Int),
            ("outputs", Text),
            ("secrets_providers", Text),
        ],
        order: "update_id",
    },
    Table {
        tag: "update_state",
        name: "update_state",
        cols: &[
            ("update_id", Text),
            ("state", Blob),
            ("sha256", Text),
            ("size", Int),
            ("resource_count", Int),
            ("sequence", Int),
            ("updated_at", Int),
        ],
        order: "update_id",
    },
    Table {
        tag: "delta",
        name: "update_deltas",
        cols: &[
            ("update_id", Text),
            ("ordinal", Int),
            ("sequence", Int),
            ("hash", Text),
            ("edits", Blob),
        ],
        order: "update_id, ordinal",
    },
    Table {
        tag: "events",
        name: "update_events",
        cols: &[
            ("update_id", Text),
            ("first_seq", Int),
            ("last_seq", Int),
            ("count", Int),
            ("events", Blob),
        ],
        order: "update_id, first_seq",
    },
    Table {
        tag: "journal",
        name: "journal_batches",
        cols: &[
            ("update_id", Text),
            ("ordinal", Int),
            ("first_seq", Int),
            ("last_seq", Int),
            ("count", Int),
            ("entries", Blob),
        ],
        order: "update_id, ordinal",
    },
    Table {
        tag: "audit",
        name: "audit_events",
        cols: &[
            ("id", Int),
            ("org", Text),
            ("at", Int),
            ("event", Text),
            ("description", Text),
            ("user_login", Text),
            ("user_name", Text),
            ("source_ip", Text),
            ("token_id", Text),
            ("token_name", Text),
            ("req_org_admin", Bool),
            ("req_stack_admin", Bool),
            ("auth_failure", Bool),
        ],
        order: "id",
    },
    // Hooks, not their deliveries: the outbox and the attempts are operational records.
    Table {
        tag: "webhook",
        name: "webhooks",
        cols: &[
            ("id", Int),
            ("org", Text),
            ("stack_id", Int),
            ("name", Text),
            ("display_name", Text),
            ("payload_url", Text),
            ("active", Bool),
            ("format", Text),
            ("filters", Text),
            ("groups", Text),
            ("secret", Blob),
            ("created_at", Int),
        ],
        order: "id",
    },
];

fn col_list(t: &Table) -> String {
    t.cols
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_json(kind: Kind, v: Value) -> StoreResult<Json> {
    Ok(match (kind, v) {
        (_, Value::Null) => Json::Null,
        (Int, Value::Int(i)) => Json::from(i),
        (Bool, Value::Int(i)) => Json::Bool(i != 0),
        (Text, Value::Text(s)) => Json::String(s),
        (Blob, Value::Blob(b)) => Json::String(B64.encode(b)),
        (Blob, Value::Text(s)) => Json::String(B64.encode(s.as_bytes())),
        (_, other) => return Err(StoreError::Corrupt(format!("unexpected value {other:?}"))),
    })
}

pub fn dump(tx: &mut dyn Tx, sink: &mut Sink) -> StoreResult<DumpReport> {
    let mut report = DumpReport::default();
    for t in TABLES {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            col_list(t),
            t.name,
            t.order
        );
        for row in tx.query(&sql, &[])? {
            let mut fields = Map::new();
            for ((name, kind), v) in t.cols.iter().zip(row.0) {
                fields.insert((*name).into(), to_json(*kind, v)?);
            }
            let rec = Record {
                table: t.tag.to_owned(),
                fields,
            };
            report.records += 1;
            if t.tag == "stack" {
                report.stacks += 1;
            }
            sink(rec)?;
        }
    }
    Ok(report)
}

/// A column value of a record, as a statement parameter's owner.
enum Owned {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Owned {
    fn param(&self) -> Param<'_> {
        match self {
            Owned::Int(v) => Param::Int(*v),
            Owned::Text(v) => Param::Text(v.as_deref()),
            Owned::Blob(v) => Param::Blob(v.as_deref()),
        }
    }
}

fn from_json(kind: Kind, v: Option<&Json>) -> StoreResult<Owned> {
    let bad = || StoreError::Corrupt(format!("unexpected backup value {v:?}"));
    Ok(match (kind, v) {
        (Int, None | Some(Json::Null)) => Owned::Int(None),
        (Bool, None | Some(Json::Null)) => Owned::Int(None),
        (Text, None | Some(Json::Null)) => Owned::Text(None),
        (Blob, None | Some(Json::Null)) => Owned::Blob(None),
        (Int, Some(j)) => Owned::Int(Some(j.as_i64().ok_or_else(bad)?)),
        (Bool, Some(j)) => Owned::Int(Some(i64::from(j.as_bool().ok_or_else(bad)?))),
        (Text, Some(j)) => Owned::Text(Some(j.as_str().ok_or_else(bad)?.to_owned())),
        (Blob, Some(j)) => Owned::Blob(Some(
            B64.decode(j.as_str().ok_or_else(bad)?)
                .map_err(|e| StoreError::Corrupt(format!("backup bytes: {e}")))?,
        )),
    })
}

fn insert_sql(t: &Table, skip_id: bool, on_conflict: &str) -> String {
    let cols: Vec<&str> = t
        .cols
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !(skip_id && *c == "id"))
        .collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}){on_conflict}",
        t.name,
        cols.join(", "),
        marks.join(", ")
    )
}

pub fn load(tx: &mut dyn Tx, records: Source, merge: Merge) -> StoreResult<LoadReport> {
    let empty = tx.count("SELECT COUNT(*) FROM stacks", &[])? == 0
        && tx.count("SELECT COUNT(*) FROM tokens", &[])? == 0;
    if merge == Merge::Refuse && !empty {
        return Err(StoreError::Conflict(
            "the target database already holds stacks or tokens".into(),
        ));
    }
    let mut report = LoadReport::default();
    // Old stack id → new stack id (None: skipped).
    let mut stacks: HashMap<i64, Option<i64>> = HashMap::new();
    let mut skipped_updates: HashSet<String> = HashSet::new();
    for rec in records {
        let Record {
            table: tag,
            fields: mut map,
        } = rec?;
        report.records += 1;
        let t = TABLES
            .iter()
            .find(|t| t.tag == tag)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown backup table {tag:?}")))?;
        if let Some(old) = map.get("stack_id").and_then(Json::as_i64) {
            let new = *stacks.get(&old).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "a record refers to stack {old}, which is not in the backup"
                ))
            })?;
            match new {
                Some(id) => {
                    map.insert("stack_id".into(), Json::from(id));
                }
                None => {
                    if tag == "update"
                        && let Some(id) = map.get("id").and_then(Json::as_str)
                    {
                        skipped_updates.insert(id.to_owned());
                    }
                    continue;
                }
            }
        }
        if map
            .get("update_id")
            .and_then(Json::as_str)
            .is_some_and(|u| skipped_updates.contains(u))
        {
            continue;
        }
        let values: Vec<Owned> = t
            .cols
            .iter()
            .map(|(c, k)| from_json(*k, map.get(*c)))
            .collect::<StoreResult<_>>()?;
        match tag.as_str() {
            "stack" => {
                let old = map.get("id").and_then(Json::as_i64).unwrap_or(0);
                let name = |c: &str| map.get(c).and_then(Json::as_str).unwrap_or("").to_owned();
                let (org, project, stack) = (name("org"), name("project"), name("name"));
                let taken = tx.count(
                    "SELECT COUNT(*) FROM stacks WHERE org = ?1 AND project = ?2 AND name = ?3",
                    &[
                        Param::Text(Some(&org)),
                        Param::Text(Some(&project)),
                        Param::Text(Some(&stack)),
                    ],
                )? > 0;
                if taken {
                    report
                        .skipped_stacks
                        .push(format!("{org}/{project}/{stack}"));
                    stacks.insert(old, None);
                    continue;
                }
                // A fresh target keeps the ids; a merge lets the database choose.
                let keep_id = merge == Merge::Refuse;
                let params: Vec<Param<'_>> = t
                    .cols
                    .iter()
                    .zip(&values)
                    .filter(|((c, _), _)| keep_id || *c != "id")
                    .map(|(_, v)| v.param())
                    .collect();
                let sql = format!("{} RETURNING id", insert_sql(t, !keep_id, ""));
                let id = tx
                    .one(&sql, &params)?
                    .ok_or_else(|| StoreError::Corrupt("insert returned no id".into()))?
                    .i64(0)?;
                stacks.insert(old, Some(id));
                report.stacks += 1;
            }
            "audit" | "webhook" => {
                // Numbered by the target; records come in the order they were numbered,
                // so the order is kept. A hook whose name its scope already has is kept as
                // the target has it.
                let params: Vec<Param<'_>> = values.iter().skip(1).map(Owned::param).collect();
                let on_conflict = if tag == "webhook" {
                    " ON CONFLICT DO NOTHING"
                } else {
                    ""
                };
                tx.exec(&insert_sql(t, true, on_conflict), &params)?;
            }
            _ => {
                let on_conflict = match (tag.as_str(), merge) {
                    ("meta", Merge::Refuse) => {
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    }
                    (
                        "meta" | "token" | "former_name" | "user" | "org" | "role" | "member"
                        | "team" | "team_member" | "trust_policy" | "grant",
                        _,
                    ) => " ON CONFLICT DO NOTHING",
                    _ => "",
                };
                let params: Vec<Param<'_>> = values.iter().map(Owned::param).collect();
                tx.exec(&insert_sql(t, false, on_conflict), &params)?;
            }
        }
    }
    if tx.dialect() == Dialect::Postgres {
        // Ids inserted as given leave the identity behind them: move it past the largest.
        tx.query(
            "SELECT setval(pg_get_serial_sequence('stacks', 'id'), \
             GREATEST((SELECT MAX(id) FROM stacks), 1))",
            &[],
        )?;
    }
    Ok(report)
}
