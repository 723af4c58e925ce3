//! `pbackend adopt`: every stack of a DIY backend, with its history, in one command.
//!
//! Each stack becomes a stack of the organization given (the DIY backend knows only
//! `organization`), with its tags. Each history entry becomes an update with its kind,
//! result, times, message, environment and configuration, and the state the CLI saved after
//! it becomes that update's version; the stack's current state comes last (as an `import`)
//! when it differs from the last history entry's. Passphrase-encrypted secrets — in states and
//! in the configuration of history entries — are opened with the passphrase and sealed again
//! with the stack's own key, so the CLI reads them through the service as it would any other.
//! A stack that cannot be adopted whole is left out and said why; the others go on.

pub mod diy;
pub mod passphrase;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::blocking::run_blocking;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::operator::Progress;
use crate::engine::state::deployment::{blob_of, check_untyped};
use crate::engine::state::reveal;
use crate::engine::{CreateStack, Engine, Identity};
use crate::store::{AdoptedRecord, ImportOutcome, NewUpdate, StackKey, StackRow, UpdateStatus};

use diy::{DiySource, DiyStack};
use passphrase::Crypter;

pub struct AdoptOptions {
    /// The organization the stacks go to.
    pub org: String,
    pub passphrase: Option<String>,
    /// The URL the CLI logs in to, written into the states' secrets provider as the CLI
    /// would write it.
    pub public_url: String,
    pub dry_run: bool,
}

/// What happened to one stack.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptedStack {
    pub stack: String,
    /// History entries carried over as updates.
    pub updates: usize,
    /// States stored as versions.
    pub versions: usize,
    /// Secret values opened and sealed again with the stack's key.
    pub secrets: usize,
    pub tags: usize,
    pub adopted: bool,
    /// `adopted`, `would be adopted` (dry run), or why it was left out.
    pub outcome: String,
}

/// One state to store, with the update that produced it.
struct Planned {
    record: Option<(NewUpdateFields, AdoptedRecord)>,
    deployment: Value,
}

struct NewUpdateFields {
    kind: String,
    message: String,
    environment: String,
    /// DIY `config.Map` JSON; converted (and its secrets sealed) once the stack key exists,
    /// with the passphrase salt of the state saved with it.
    config: Value,
}

impl Engine {
    /// Adopts every stack of `src`. Stacks that exist here already, are locked by a running
    /// operation, or cannot be read whole are left out, each with its reason.
    pub async fn adopt(
        &self,
        src: &DiySource,
        opts: &AdoptOptions,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<Vec<AdoptedStack>> {
        let (_layout, stacks) = diy::discover(src).await?;
        progress.start(stacks.len() as u64, "adopting");
        let mut crypters: HashMap<String, Arc<Crypter>> = HashMap::new();
        let mut out = Vec::new();
        for s in stacks {
            let shown = format!(
                "{}/{}/{}",
                opts.org,
                s.project.as_deref().unwrap_or("?"),
                s.stack
            );
            progress.step(&shown);
            match self.adopt_one(src, &s, opts, &mut crypters).await {
                Ok(r) => out.push(r),
                Err(e) => out.push(AdoptedStack {
                    stack: shown,
                    updates: 0,
                    versions: 0,
                    secrets: 0,
                    tags: 0,
                    adopted: false,
                    outcome: format!("left out: {e}"),
                }),
            }
        }
        progress.finish();
        Ok(out)
    }

    async fn adopt_one(
        &self,
        src: &DiySource,
        s: &DiyStack,
        opts: &AdoptOptions,
        crypters: &mut HashMap<String, Arc<Crypter>>,
    ) -> EngineResult<AdoptedStack> {
        if s.locked {
            return Err(EngineError::Conflict(
                "an operation holds it (a lock file under .pulumi/locks): let it finish, or \
                 `pulumi cancel` it, first"
                    .into(),
            ));
        }
        let current = parse(&s.file, &src.read(&s.file).await?)?;
        let latest = latest_of(&s.file, &current)?;
        let project = match &s.project {
            Some(p) => p.clone(),
            None => latest.as_ref().and_then(project_from_urns).ok_or_else(|| {
                EngineError::Invalid(
                    "a legacy-layout stack without resources: its project is not recorded \
                         anywhere (run `pulumi state upgrade` on the backend first)"
                        .into(),
                )
            })?,
        };
        let key = StackKey {
            org: opts.org.clone(),
            project,
            stack: s.stack.clone(),
        };
        if self.store.get_stack(&key).await?.is_some() {
            return Err(EngineError::AlreadyExists(format!(
                "stack '{key}' already exists in this database"
            )));
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        if let Some(t) = &s.tags {
            let v = parse(t, &src.read(t).await?)?;
            if let Some(m) = v.get("tags").and_then(Value::as_object) {
                for (k, v) in m {
                    tags.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
                }
            }
        }

        // The states to store, oldest first.
        let mut plan: Vec<Planned> = Vec::new();
        for (nanos, history, checkpoint) in &s.history {
            let Some(checkpoint) = checkpoint else {
                continue;
            };
            let info = parse(history, &src.read(history).await?)?;
            let ck = parse(checkpoint, &src.read(checkpoint).await?)?;
            let Some(dep) = latest_of(checkpoint, &ck)? else {
                continue;
            };
            let started = info
                .get("startTime")
                .and_then(Value::as_i64)
                .unwrap_or((*nanos / 1_000_000_000) as i64);
            let ended = info
                .get("endTime")
                .and_then(Value::as_i64)
                .unwrap_or(started);
            let status = match info.get("result").and_then(Value::as_str) {
                Some("succeeded") => UpdateStatus::Succeeded,
                _ => UpdateStatus::Failed,
            };
            let text = |k: &str| {
                info.get(k)
                    .map(|v| v.to_string())
                    .filter(|v| v != "null")
                    .unwrap_or_else(|| "{}".into())
            };
            plan.push(Planned {
                record: Some((
                    NewUpdateFields {
                        kind: info
                            .get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("update")
                            .to_owned(),
                        message: info
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        environment: text("environment"),
                        config: info.get("config").cloned().unwrap_or(Value::Null),
                    },
                    AdoptedRecord {
                        status,
                        started_at: started,
                        ended_at: ended,
                        resource_changes: info
                            .get("resourceChanges")
                            .filter(|v| v.is_object())
                            .map(Value::to_string),
                    },
                )),
                deployment: dep,
            });
        }
        if let Some(latest) = latest {
            let same = plan.last().is_some_and(|p| p.deployment == latest);
            if !same {
                plan.push(Planned {
                    record: None,
                    deployment: latest,
                });
            }
        }

        // Open every passphrase secret now: a wrong passphrase stops this stack before
        // anything is written.
        let mut secrets = 0;
        for p in &mut plan {
            let salt = passphrase_salt(&p.deployment);
            let crypter = match salt {
                Some(salt) => Some(self.crypter(&salt, opts, crypters).await?),
                None => None,
            };
            // The same key opens the secure values of the entry's configuration.
            secrets += open_secrets(&mut p.deployment, crypter.as_deref())?;
        }
        let updates = plan.iter().filter(|p| p.record.is_some()).count();
        let versions = plan.len();
        let mut report = AdoptedStack {
            stack: key.to_string(),
            updates,
            versions,
            secrets,
            tags: tags.len(),
            adopted: false,
            outcome: "would be adopted".into(),
        };
        if opts.dry_run {
            return Ok(report);
        }

        let caller = Identity::operator();
        let mut all_tags: std::collections::BTreeMap<String, String> = tags.into_iter().collect();
        all_tags.insert("pulumi:project".into(), key.project.clone());
        let stack = self
            .create_stack(
                &caller,
                &key.org,
                &key.project,
                CreateStack {
                    name: key.stack.clone(),
                    tags: all_tags,
                    teams: vec![],
                    initial_state: None,
                },
            )
            .await?;
        for p in plan {
            let config = match &p.record {
                Some((fields, _)) => {
                    let crypter = match passphrase_salt(&p.deployment) {
                        Some(salt) if config_has_secure(&fields.config) => {
                            Some(self.crypter(&salt, opts, crypters).await?)
                        }
                        _ => None,
                    };
                    self.service_config(&stack, &fields.config, crypter.as_deref())
                        .await?
                }
                None => "{}".into(),
            };
            self.adopt_version(&stack, &key, opts, p, config).await?;
        }
        report.adopted = true;
        report.outcome = "adopted".into();
        Ok(report)
    }

    async fn crypter(
        &self,
        salt: &str,
        opts: &AdoptOptions,
        cache: &mut HashMap<String, Arc<Crypter>>,
    ) -> EngineResult<Arc<Crypter>> {
        if let Some(c) = cache.get(salt) {
            return Ok(c.clone());
        }
        let Some(phrase) = opts.passphrase.clone() else {
            return Err(EngineError::Invalid(
                "its secrets are passphrase-encrypted: give the passphrase (--passphrase-file, \
                 or PULUMI_CONFIG_PASSPHRASE)"
                    .into(),
            ));
        };
        let s = salt.to_owned();
        // A million PBKDF2 rounds: off the async workers.
        let c = Arc::new(run_blocking(move || Crypter::new(&phrase, &s)).await?);
        cache.insert(salt.to_owned(), c.clone());
        Ok(c)
    }

    /// A DIY `config.Map` as the service's `{string, secret, object}` values, secure values
    /// sealed with the stack's key.
    async fn service_config(
        &self,
        stack: &StackRow,
        config: &Value,
        crypter: Option<&Crypter>,
    ) -> EngineResult<String> {
        let Some(m) = config.as_object() else {
            return Ok("{}".into());
        };
        let key = self.stack_secret_key(stack.id).await?;
        let seal = |plain: &str| {
            base64::engine::general_purpose::STANDARD.encode(key.encrypt(plain.as_bytes()))
        };
        let mut out = Map::new();
        for (k, v) in m {
            let entry = match v {
                Value::String(s) => json!({"string": s, "secret": false, "object": false}),
                Value::Object(o)
                    if o.len() == 1 && o.get("secure").is_some_and(Value::is_string) =>
                {
                    let ct = o["secure"].as_str().unwrap_or_default();
                    let c = crypter.ok_or_else(|| {
                        EngineError::Invalid("a secure configuration value without a salt".into())
                    })?;
                    json!({"string": seal(&c.decrypt(ct)?), "secret": true, "object": false})
                }
                other if config_has_secure(other) => {
                    let mut plain = other.clone();
                    let c = crypter.ok_or_else(|| {
                        EngineError::Invalid("a secure configuration value without a salt".into())
                    })?;
                    open_secure(&mut plain, c)?;
                    json!({"string": seal(&plain.to_string()), "secret": true, "object": true})
                }
                other => json!({"string": other.to_string(), "secret": false, "object": true}),
            };
            out.insert(k.clone(), entry);
        }
        Ok(Value::Object(out).to_string())
    }

    async fn adopt_version(
        &self,
        stack: &StackRow,
        key: &StackKey,
        opts: &AdoptOptions,
        p: Planned,
        config: String,
    ) -> EngineResult<()> {
        let mut dep = p.deployment;
        if let Some(d) = dep.as_object_mut() {
            d.insert(
                "secrets_providers".into(),
                json!({"type": "service", "state": {
                    "url": opts.public_url, "owner": key.org, "project": key.project, "stack": key.stack
                }}),
            );
        }
        let json = serde_json::to_vec(&json!({"version": 3, "deployment": dep}))
            .map_err(EngineError::internal)?;
        let target = self.stack_secret_key(stack.id).await?;
        let blob = run_blocking(move || {
            let (json, _) = reveal::conceal(&json, &target)?;
            reveal::check_ciphertexts(&json, &target)?;
            let count = check_untyped(&json)?;
            Ok(blob_of(&json, count))
        })
        .await?;
        let now = self.now();
        let (fields, record) = match p.record {
            Some((f, r)) => (f, r),
            None => (
                NewUpdateFields {
                    kind: "import".into(),
                    message: "adopted from a DIY backend".into(),
                    environment: "{}".into(),
                    config: Value::Null,
                },
                AdoptedRecord {
                    status: UpdateStatus::Succeeded,
                    started_at: now,
                    ended_at: now,
                    resource_changes: None,
                },
            ),
        };
        let update = NewUpdate {
            coherence_window: None,
            id: crate::engine::state::updates::new_update_id(),
            stack_id: stack.id,
            kind: fields.kind,
            dry_run: false,
            created_at: record.started_at,
            author: Identity::operator().user,
            message: fields.message,
            environment: fields.environment,
            config,
        };
        match self.store.adopt_state(update, record, blob).await? {
            ImportOutcome::Imported { .. } => Ok(()),
            ImportOutcome::Busy(_) => Err(EngineError::UpdateInProgress),
        }
    }
}

fn parse(what: &str, bytes: &[u8]) -> EngineResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Invalid(format!("{what} is not valid JSON: {e}")))
}

/// The deployment of a checkpoint file (`None` for a stack created but never updated).
fn latest_of(what: &str, ck: &Value) -> EngineResult<Option<Value>> {
    let version = ck.get("version").and_then(Value::as_i64).unwrap_or(0);
    if version == 0 {
        return Ok(None);
    }
    if version != 3 && version != 4 {
        return Err(EngineError::Invalid(format!(
            "{what} is checkpoint version {version}; run any pulumi command on the stack with a \
             current CLI to upgrade it, then adopt"
        )));
    }
    Ok(ck
        .get("checkpoint")
        .and_then(|c| c.get("latest"))
        .filter(|l| l.is_object())
        .cloned())
}

/// `urn:pulumi:<stack>::<project>::...` of the first resource.
fn project_from_urns(dep: &Value) -> Option<String> {
    let urn = dep
        .get("resources")?
        .as_array()?
        .first()?
        .get("urn")?
        .as_str()?;
    urn.split("::").nth(1).map(str::to_owned)
}

fn passphrase_salt(dep: &Value) -> Option<String> {
    let sp = dep.get("secrets_providers")?;
    (sp.get("type")?.as_str()? == "passphrase")
        .then(|| sp.get("state")?.get("salt")?.as_str().map(str::to_owned))
        .flatten()
}

/// Turns every `{sig, ciphertext}` in the deployment into `{sig, plaintext}`; how many.
fn open_secrets(dep: &mut Value, crypter: Option<&Crypter>) -> EngineResult<usize> {
    let mut n = 0;
    let provider = dep
        .get("secrets_providers")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_owned();
    walk_secrets(dep, &mut |obj| {
        let Some(ct) = obj.get("ciphertext").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(c) = crypter else {
            return Err(EngineError::Invalid(format!(
                "its secrets are sealed by the `{provider}` secrets provider, which pbackend \
                 cannot open; move the stack to the passphrase provider first (`pulumi stack \
                 change-secrets-provider passphrase`)"
            )));
        };
        let plain = c.decrypt(ct)?;
        obj.remove("ciphertext");
        obj.insert("plaintext".into(), Value::String(plain));
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

fn walk_secrets(
    v: &mut Value,
    f: &mut dyn FnMut(&mut Map<String, Value>) -> EngineResult<()>,
) -> EngineResult<()> {
    match v {
        Value::Object(o) => {
            if o.get(reveal::SIG_KEY).and_then(Value::as_str)
                == Some(reveal::SECRET_SIG.trim_matches('"'))
            {
                return f(o);
            }
            for x in o.values_mut() {
                walk_secrets(x, f)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                walk_secrets(x, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn config_has_secure(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            (o.len() == 1 && o.get("secure").is_some_and(Value::is_string))
                || o.values().any(config_has_secure)
        }
        Value::Array(a) => a.iter().any(config_has_secure),
        _ => false,
    }
}

/// Replaces every `{"secure": ct}` inside a configuration value with its plaintext.
fn open_secure(v: &mut Value, c: &Crypter) -> EngineResult<()> {
    match v {
        Value::Object(o) if o.len() == 1 && o.get("secure").is_some_and(Value::is_string) => {
            let ct = o["secure"].as_str().unwrap_or_default().to_owned();
            *v = Value::String(c.decrypt(&ct)?);
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                open_secure(x, c)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                open_secure(x, c)?;
            }
        }
        _ => {}
    }
    Ok(())
}
