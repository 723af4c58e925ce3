//! A direct model of journal replay for tests and fuzzing: a sequence of engine steps played
//! against a base, producing both the journal the CLI would send and, independently, the
//! resources and pending operations the resulting state must hold. Not used by the server.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

pub fn urn(name: &str) -> String {
    format!("urn:pulumi:dev::proj::pbtest:index:Item::{name}")
}

pub fn resource(name: &str, version: u32) -> Value {
    json!({"urn": urn(name), "custom": true, "id": format!("{name}-id"), "type": "pbtest:index:Item",
           "inputs": {"value": format!("{name}-v{version}")}, "outputs": {"value": format!("{name}-v{version}"), "n": 1.5e3}})
}

#[derive(Debug, Clone)]
pub enum Step {
    Create,
    Update(usize),
    Delete(usize),
    /// Create the replacement and mark the old one for deletion; `true`: also delete it.
    Replace(usize, bool),
    Fail(usize),
    Refresh(usize, bool),
    /// New outputs for an earlier created resource.
    Outputs(usize),
    Pending,
    /// A state migration (journal v2): inserts a resource into the base at a position, and
    /// rewrites one untouched base resource and one resource of this update.
    Migrate(usize),
}

/// A resource of the base as the journal addresses it: one of the original base, or one a
/// migration inserted.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Orig(usize),
    Inserted(String),
}

/// The current base index of original resource `i`.
fn pos(order: &[Item], i: usize) -> usize {
    order
        .iter()
        .position(|x| *x == Item::Orig(i))
        .unwrap_or(usize::MAX)
}

fn migrated(mut r: Value) -> Value {
    r["outputs"]["migrated"] = json!(true);
    r
}

impl Step {
    /// Decodes steps from arbitrary bytes (fuzzing): two bytes a step.
    pub fn from_bytes(data: &[u8]) -> Vec<Step> {
        data.chunks(2)
            .map(|c| {
                let k = *c.get(1).unwrap_or(&0) as usize;
                match c[0] % 15 {
                    0..=2 => Step::Create,
                    3..=5 => Step::Update(k),
                    6 | 7 => Step::Delete(k),
                    8 => Step::Replace(k, false),
                    9 => Step::Replace(k, true),
                    10 => Step::Fail(k),
                    11 => Step::Refresh(k, k.is_multiple_of(2)),
                    12 => Step::Outputs(k),
                    13 => Step::Pending,
                    _ => Step::Migrate(k),
                }
            })
            .collect()
    }
}

/// Plays `steps` against a base of `n` resources like the engine would, producing the journal
/// and, independently, the resulting resource list and pending operations.
pub fn simulate(n: usize, steps: &[Step]) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut entries = vec![
        json!({"version":1,"kind":6,"sequenceID":1,"operationID":0,"removeOld":null,"removeNew":null,
        "secretsProvider":{"type":"service","state":{"url":"u","owner":"organization","project":"proj","stack":"dev"}}}),
    ];
    let mut seq = 1i64;
    let mut op = 0i64;
    let mut untouched: Vec<usize> = (0..n).collect();
    // Model.
    let mut new: Vec<(i64, Value)> = Vec::new();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut replaced: BTreeMap<usize, Value> = BTreeMap::new();
    let mut marked: HashSet<usize> = HashSet::new();
    let mut pending: Vec<Value> = Vec::new();
    let mut created = 0u32;
    let mut order: Vec<Item> = (0..n).map(Item::Orig).collect();
    let mut patched: HashSet<usize> = HashSet::new();
    let mut entry = |v: Value, seq: &mut i64| {
        *seq += 1;
        let mut v = v;
        if v.get("version").is_none() {
            v["version"] = json!(1);
        }
        v["sequenceID"] = json!(*seq);
        if v.get("removeOld").is_none() {
            v["removeOld"] = Value::Null;
        }
        if v.get("removeNew").is_none() {
            v["removeNew"] = Value::Null;
        }
        entries.push(v);
    };
    let base_name = |i: usize| format!("b{i}");
    for s in steps {
        let pick = |k: usize, untouched: &mut Vec<usize>| -> Option<usize> {
            if untouched.is_empty() {
                None
            } else {
                Some(untouched.remove(k % untouched.len()))
            }
        };
        match s {
            Step::Create => {
                op += 1;
                created += 1;
                let r = resource(&format!("n{created}"), 1);
                entry(
                    json!({"kind":0,"operationID":op,"operation":{"resource":r,"type":"creating"}}),
                    &mut seq,
                );
                entry(json!({"kind":1,"operationID":op,"state":r}), &mut seq);
                new.push((op, r));
            }
            Step::Update(k) => {
                let Some(i) = pick(*k, &mut untouched) else {
                    continue;
                };
                op += 1;
                let r = resource(&base_name(i), 2);
                entry(
                    json!({"kind":0,"operationID":op,"operation":{"resource":resource(&base_name(i),1),"type":"updating"}}),
                    &mut seq,
                );
                entry(
                    json!({"kind":1,"operationID":op,"removeOld":pos(&order, i),"state":r}),
                    &mut seq,
                );
                removed.insert(i);
                new.push((op, r));
            }
            Step::Delete(k) => {
                let Some(i) = pick(*k, &mut untouched) else {
                    continue;
                };
                op += 1;
                entry(
                    json!({"kind":0,"operationID":op,"operation":{"resource":resource(&base_name(i),1),"type":"deleting"}}),
                    &mut seq,
                );
                entry(
                    json!({"kind":1,"operationID":op,"removeOld":pos(&order, i)}),
                    &mut seq,
                );
                removed.insert(i);
            }
            Step::Replace(k, delete_old) => {
                let Some(i) = pick(*k, &mut untouched) else {
                    continue;
                };
                op += 1;
                let mut r = resource(&base_name(i), 3);
                r["id"] = json!(format!("b{i}-replacement"));
                entry(
                    json!({"kind":0,"operationID":op,"operation":{"resource":r,"type":"creating"}}),
                    &mut seq,
                );
                entry(
                    json!({"kind":1,"operationID":op,"deleteOld":pos(&order, i),"state":r}),
                    &mut seq,
                );
                new.push((op, r));
                marked.insert(i);
                if *delete_old {
                    op += 1;
                    entry(
                        json!({"kind":0,"operationID":op,"operation":{"resource":resource(&base_name(i),1),"type":"deleting"}}),
                        &mut seq,
                    );
                    entry(
                        json!({"kind":1,"operationID":op,"removeOld":pos(&order, i)}),
                        &mut seq,
                    );
                    removed.insert(i);
                }
            }
            Step::Fail(k) => {
                let Some(i) = pick(*k, &mut untouched) else {
                    continue;
                };
                op += 1;
                entry(
                    json!({"kind":0,"operationID":op,"operation":{"resource":resource(&base_name(i),1),"type":"updating"}}),
                    &mut seq,
                );
                entry(json!({"kind":2,"operationID":op}), &mut seq);
            }
            Step::Refresh(k, gone) => {
                let Some(i) = pick(*k, &mut untouched) else {
                    continue;
                };
                op += 1;
                if *gone {
                    entry(
                        json!({"kind":3,"operationID":op,"removeOld":pos(&order, i),"isRefresh":true}),
                        &mut seq,
                    );
                    removed.insert(i);
                } else {
                    let r = resource(&base_name(i), 4);
                    entry(
                        json!({"kind":3,"operationID":op,"removeOld":pos(&order, i),"isRefresh":true,"state":r}),
                        &mut seq,
                    );
                    replaced.insert(i, r);
                }
            }
            Step::Outputs(k) => {
                if new.is_empty() {
                    continue;
                }
                let j = k % new.len();
                let (target_op, old) = &new[j];
                let mut r = old.clone();
                r["outputs"]["extra"] = json!(k);
                entry(
                    json!({"kind":4,"operationID":*target_op,"removeNew":*target_op,"state":r}),
                    &mut seq,
                );
                new[j].1 = r;
            }
            Step::Migrate(k) => {
                // Migrations never run with operations in flight.
                if !pending.is_empty() {
                    continue;
                }
                created += 1;
                let name = format!("m{created}");
                let mut next = order.clone();
                next.insert(k % (order.len() + 1), Item::Inserted(name.clone()));
                let layout: Vec<Value> = next
                    .iter()
                    .map(|it| match order.iter().position(|o| o == it) {
                        Some(p) => json!({"baseIndex": p}),
                        None => json!({"stateIndex": 0}),
                    })
                    .collect();
                let mut e = json!({"version":2,"kind":10,"operationID":0,"layout":layout,
                    "states":[resource(&name, 1)]});
                if !untouched.is_empty() {
                    let i = untouched[k % untouched.len()];
                    if !patched.contains(&i) {
                        e["baseStatePatches"] = json!([{"index": pos(&order, i),
                            "state": migrated(resource(&base_name(i), 1))}]);
                        patched.insert(i);
                    }
                }
                if !new.is_empty() {
                    let j = k % new.len();
                    let r = migrated(new[j].1.clone());
                    e["newStatePatches"] = json!([{"operationID": new[j].0, "state": r}]);
                    new[j].1 = r;
                }
                entry(e, &mut seq);
                order = next;
            }
            Step::Pending => {
                op += 1;
                created += 1;
                let operation =
                    json!({"resource": resource(&format!("p{created}"), 1), "type": "creating"});
                entry(
                    json!({"kind":0,"operationID":op,"operation":operation}),
                    &mut seq,
                );
                pending.push(operation);
            }
        }
    }
    let mut resources: Vec<Value> = new.into_iter().map(|(_, r)| r).collect();
    for item in order {
        let i = match item {
            Item::Inserted(name) => {
                resources.push(resource(&name, 1));
                continue;
            }
            Item::Orig(i) => i,
        };
        if removed.contains(&i) {
            continue;
        }
        if let Some(r) = replaced.get(&i) {
            resources.push(r.clone());
            continue;
        }
        let mut r = resource(&base_name(i), 1);
        if patched.contains(&i) {
            r = migrated(r);
        }
        if marked.contains(&i) {
            r["delete"] = json!(true);
        }
        resources.push(r);
    }
    (entries, resources, pending)
}

pub fn base_deployment(n: usize) -> Value {
    json!({"version": 3, "deployment": {
        "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""},
        "secrets_providers": {"type":"service","state":{"url":"u","owner":"organization","project":"proj","stack":"dev"}},
        "resources": (0..n).map(|i| resource(&format!("b{i}"), 1)).collect::<Vec<_>>()
    }})
}
