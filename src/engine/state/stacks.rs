//! Stack rules: creation, lookup, listing, tags, rename, deletion.

use crate::engine::crypto::StackSecretKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::integration::audit::AuditKind;
use crate::engine::names;
use crate::engine::state::deployment::{blob_of, check_untyped};
use crate::engine::views::{StackView, UpdateView};
use crate::engine::{Engine, Identity, blocking};
use crate::store::{
    Guarded, NewStack, StackGuard, StackKey, StackQuery, StackRow, StoreError, Tags, Visibility,
};

pub struct CreateStack {
    pub name: String,
    pub tags: Tags,
    /// Teams of the organization given write access (`pulumi stack init --teams`).
    pub teams: Vec<String>,
    /// Initial deployment text (stacks that manage their own secrets provider send one).
    pub initial_state: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
pub struct StackListQuery {
    pub org: Option<String>,
    pub project: Option<String>,
    pub tag_name: Option<String>,
    pub tag_value: Option<String>,
    pub continuation: Option<String>,
}

/// Stacks one unpaginated listing returns at most (API versions before 8).
pub const MAX_UNPAGED_STACKS: usize = 10_000;

pub struct StackList {
    pub stacks: Vec<StackView>,
    /// Present when more stacks follow; URL-safe.
    pub continuation: Option<String>,
}

const LIST_PAGE: i64 = 100;

impl Engine {
    pub async fn create_stack(
        &self,
        caller: &Identity,
        org: &str,
        project: &str,
        req: CreateStack,
    ) -> EngineResult<StackRow> {
        let key = StackKey {
            org: org.to_owned(),
            project: project.to_owned(),
            stack: req.name,
        };
        names::check_key(&key)?;
        self.check_org_access(caller, &key.org)?;
        names::check_tags(&req.tags)?;
        let initial_state = match req.initial_state {
            Some(json) => Some(
                blocking::run_sized(json.len(), move || {
                    let count = check_untyped(&json)?;
                    Ok(blob_of(&json, count))
                })
                .await?,
            ),
            None => None,
        };
        for team in &req.teams {
            if self.store.get_team(org, team).await?.is_none() {
                return Err(EngineError::NotFound(format!("team '{team}' not found")));
            }
        }
        let wrapped_key = self.master()?.wrap(&StackSecretKey::generate());
        let notes = self
            .note(
                caller,
                Some(&key.org),
                AuditKind::StackCreated,
                format!("stack {key} created"),
            )
            .with_hook(self.stack_hook_event(caller, &key, "created"));
        let new = NewStack {
            key: key.clone(),
            tags: req.tags,
            created_at: self.now(),
            created_by: caller.is_user().then(|| caller.user.clone()),
            teams: req.teams,
            wrapped_key,
            initial_state,
            notes,
        };
        match self.store.create_stack(new).await {
            Ok(row) => Ok(row),
            Err(StoreError::Conflict(_)) => Err(EngineError::AlreadyExists(format!(
                "Stack '{key}' already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The stack and, when one holds a live lease, its running update.
    pub async fn get_stack(
        &self,
        caller: &Identity,
        key: &StackKey,
    ) -> EngineResult<(StackView, Option<UpdateView>)> {
        let stack = self.stack(caller, key).await?;
        let running = match &stack.active_update {
            Some(_) => self
                .store
                .running_update(stack.id)
                .await?
                .filter(|u| u.lease_live(self.now())),
            None => None,
        };
        Ok((stack.into(), running.map(Into::into)))
    }

    /// Every stack the query matches in one answer (clients before API version 8, which do
    /// not follow continuation tokens), up to [`MAX_UNPAGED_STACKS`].
    pub async fn list_all_stacks(
        &self,
        caller: &Identity,
        mut q: StackListQuery,
    ) -> EngineResult<StackList> {
        let mut all = Vec::new();
        loop {
            let page = self.list_stacks(caller, q.clone()).await?;
            all.extend(page.stacks);
            match page.continuation {
                Some(next) if all.len() < MAX_UNPAGED_STACKS => q.continuation = Some(next),
                _ => break,
            }
        }
        all.truncate(MAX_UNPAGED_STACKS);
        Ok(StackList {
            stacks: all,
            continuation: None,
        })
    }

    pub async fn list_stacks(
        &self,
        caller: &Identity,
        q: StackListQuery,
    ) -> EngineResult<StackList> {
        if let Some(org) = &q.org {
            self.check_org_access(caller, org)?;
        }
        let after_id = match &q.continuation {
            Some(t) => Some(
                t.parse::<i64>()
                    .map_err(|_| EngineError::Invalid("invalid continuationToken".into()))?,
            ),
            None => None,
        };
        let query = StackQuery {
            orgs: match &q.org {
                Some(org) => Some(vec![org.clone()]),
                None if caller.is_instance_admin() => None,
                None => Some(self.visible_namespaces(caller).await?),
            },
            project: q.project.clone(),
            tag_name: q.tag_name.clone(),
            tag_value: q.tag_value.clone(),
            after_id,
            limit: LIST_PAGE,
            // Only what the caller may read: whole organizations, their own stacks, grants.
            visible_to: (!caller.is_instance_admin()).then(|| Visibility {
                orgs: caller.readable_orgs(),
                login: caller.is_user().then(|| caller.user.clone()),
                teams: caller.team_keys(),
            }),
        };
        let stacks = self.store.list_stacks(query).await?;
        let continuation = (stacks.len() as i64 == LIST_PAGE)
            .then(|| stacks.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(StackList {
            stacks: stacks.into_iter().map(Into::into).collect(),
            continuation,
        })
    }

    /// The namespaces a listing without an organization spans: the caller's own and those
    /// of the organizations it belongs to.
    async fn visible_namespaces(&self, caller: &Identity) -> EngineResult<Vec<String>> {
        Ok(self.namespaces(caller))
    }

    pub async fn project_exists(
        &self,
        caller: &Identity,
        org: &str,
        project: &str,
    ) -> EngineResult<bool> {
        self.check_org_access(caller, org)?;
        names::check_project(project)?;
        Ok(self.store.project_exists(org, project).await?)
    }

    /// Deletes a stack. Without `force` a stack that still has resources, or that a live
    /// update holds, is kept.
    pub async fn delete_stack(
        &self,
        caller: &Identity,
        key: &StackKey,
        force: bool,
    ) -> EngineResult<()> {
        let stack = self.stack(caller, key).await?;
        let guard = StackGuard {
            now: self.now(),
            force,
            require_empty: true,
        };
        let notes = self
            .note(
                caller,
                Some(&key.org),
                AuditKind::StackDeleted,
                format!(
                    "stack {key} deleted{}",
                    if force { " (forced)" } else { "" }
                ),
            )
            .with_hook(self.stack_hook_event(caller, key, "deleted"));
        match self.store.delete_stack(stack.id, guard, notes).await? {
            Guarded::Done(_) => Ok(()),
            Guarded::HasResources => Err(EngineError::StackHasResources),
            Guarded::Busy(_) => Err(EngineError::UpdateInProgress),
        }
    }

    /// Replaces the stack's tags.
    pub async fn set_stack_tags(
        &self,
        caller: &Identity,
        key: &StackKey,
        tags: Tags,
    ) -> EngineResult<()> {
        names::check_tags(&tags)?;
        let stack = self.stack(caller, key).await?;
        let notes = self.note(
            caller,
            Some(&key.org),
            AuditKind::StackTagsUpdated,
            format!("tags of stack {key} set ({} tags)", tags.len()),
        );
        self.store.set_stack_tags(stack.id, tags, notes).await?;
        Ok(())
    }

    /// Renames a stack within its organization, possibly into another project. History,
    /// versions and the secrets key stay with it.
    pub async fn rename_stack(
        &self,
        caller: &Identity,
        key: &StackKey,
        new_project: &str,
        new_name: &str,
    ) -> EngineResult<StackRow> {
        let stack = self.stack(caller, key).await?;
        let to = StackKey {
            org: key.org.clone(),
            project: if new_project.is_empty() {
                key.project.clone()
            } else {
                new_project.to_owned()
            },
            stack: new_name.to_owned(),
        };
        names::check_key(&to)?;
        let guard = StackGuard {
            now: self.now(),
            force: false,
            require_empty: false,
        };
        let notes = self.note(
            caller,
            Some(&key.org),
            AuditKind::StackRenamed,
            format!("stack {key} renamed to {to}"),
        );
        let renamed = self
            .store
            .rename_stack(stack.id, to.clone(), guard, notes)
            .await;
        match renamed {
            Ok(Guarded::Done(row)) => Ok(row),
            Ok(Guarded::Busy(_)) => Err(EngineError::UpdateInProgress),
            Ok(Guarded::HasResources) => Err(EngineError::Internal(
                "a rename was refused for resources".into(),
            )),
            Err(StoreError::Conflict(_)) => Err(EngineError::AlreadyExists(format!(
                "Stack '{to}' already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
