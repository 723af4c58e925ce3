//! The [`AccessStore`] methods: each one SQL function of `people.rs`, `teams.rs` or
//! `logins.rs`, run as a read or a write transaction.

use super::{Backend, SqlStore, logins, people, teams, tokens};
use crate::store::access::*;
use crate::store::*;

impl<B: Backend> AccessStore for SqlStore<B> {
    fn upsert_user(&self, u: access::NewUser) -> StoreFuture<'_, access::UserRow> {
        self.w(move |tx| people::upsert_user(tx, &u))
    }

    fn get_user<'a>(&'a self, login: &'a str) -> StoreFuture<'a, Option<access::UserRow>> {
        let login = login.to_owned();
        self.r(move |tx| people::get_user(tx, &login))
    }

    fn user_by_subject<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<access::UserRow>> {
        let (i, s) = (issuer.to_owned(), subject.to_owned());
        self.r(move |tx| people::user_by_subject(tx, &i, &s))
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<access::UserRow>> {
        self.r(people::list_users)
    }

    fn set_user_disabled<'a>(&'a self, login: &'a str, at: Option<i64>) -> StoreFuture<'a, bool> {
        let login = login.to_owned();
        self.w(move |tx| people::set_user_disabled(tx, &login, at))
    }

    fn memberships<'a>(&'a self, login: &'a str) -> StoreFuture<'a, access::Memberships> {
        let login = login.to_owned();
        self.r(move |tx| people::memberships(tx, &login))
    }

    fn ensure_org<'a>(&'a self, name: &'a str, now: i64) -> StoreFuture<'a, access::OrgRow> {
        let name = name.to_owned();
        self.w(move |tx| people::ensure_org(tx, &name, now))
    }

    fn get_org<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<access::OrgRow>> {
        let name = name.to_owned();
        self.r(move |tx| people::get_org(tx, &name))
    }

    fn list_orgs(&self) -> StoreFuture<'_, Vec<access::OrgRow>> {
        self.r(people::list_orgs)
    }

    fn set_org_default_permission<'a>(
        &'a self,
        name: &'a str,
        permission: StackPermission,
    ) -> StoreFuture<'a, bool> {
        let name = name.to_owned();
        self.w(move |tx| people::set_org_default_permission(tx, &name, permission))
    }

    fn set_member<'a>(
        &'a self,
        org: &'a str,
        login: &'a str,
        role: OrgRole,
        role_id: Option<Option<String>>,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'a, access::MemberRow> {
        let (org, login) = (org.to_owned(), login.to_owned());
        self.wn(
            notes,
            |_| true,
            move |tx| people::set_member(tx, &org, &login, role, &role_id, now),
        )
    }

    fn remove_member<'a>(
        &'a self,
        org: &'a str,
        login: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool> {
        let (org, login) = (org.to_owned(), login.to_owned());
        self.wn(
            notes,
            |removed| *removed,
            move |tx| people::remove_member(tx, &org, &login),
        )
    }

    fn list_members<'a>(&'a self, org: &'a str) -> StoreFuture<'a, Vec<access::MemberRow>> {
        let org = org.to_owned();
        self.r(move |tx| people::list_members(tx, &org))
    }

    fn create_team(&self, team: access::TeamRow, notes: Notes) -> StoreFuture<'_, ()> {
        self.wn(notes, |_| true, move |tx| teams::create_team(tx, &team))
    }

    fn update_team(&self, team: access::TeamRow, notes: Notes) -> StoreFuture<'_, bool> {
        self.wn(notes, |done| *done, move |tx| teams::update_team(tx, &team))
    }

    fn delete_team<'a>(
        &'a self,
        org: &'a str,
        name: &'a str,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'a, bool> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.wn(
            notes,
            |done| *done,
            move |tx| teams::delete_team(tx, &org, &name, now),
        )
    }

    fn get_team<'a>(
        &'a self,
        org: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<(access::TeamRow, Vec<access::TeamMember>)>> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.r(move |tx| teams::get_team(tx, &org, &name))
    }

    fn list_teams<'a>(&'a self, org: &'a str) -> StoreFuture<'a, Vec<access::TeamRow>> {
        let org = org.to_owned();
        self.r(move |tx| teams::list_teams(tx, &org))
    }

    fn set_team_member<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        login: &'a str,
        role: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool> {
        let (org, team, login, role) = (
            org.to_owned(),
            team.to_owned(),
            login.to_owned(),
            role.to_owned(),
        );
        self.wn(
            notes,
            |done| *done,
            move |tx| teams::set_team_member(tx, &org, &team, &login, &role),
        )
    }

    fn remove_team_member<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        login: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool> {
        let (org, team, login) = (org.to_owned(), team.to_owned(), login.to_owned());
        self.wn(
            notes,
            |done| *done,
            move |tx| teams::remove_team_member(tx, &org, &team, &login),
        )
    }

    fn create_role(&self, role: access::RoleRow, notes: Notes) -> StoreFuture<'_, ()> {
        self.wn(notes, |_| true, move |tx| teams::create_role(tx, &role))
    }

    fn update_role(&self, role: access::RoleRow, notes: Notes) -> StoreFuture<'_, bool> {
        self.wn(notes, |done| *done, move |tx| teams::update_role(tx, &role))
    }

    fn delete_role<'a>(
        &'a self,
        org: &'a str,
        id: &'a str,
        force: bool,
        notes: Notes,
    ) -> StoreFuture<'a, access::RoleDelete> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.wn(
            notes,
            |o| matches!(o, access::RoleDelete::Deleted),
            move |tx| teams::delete_role(tx, &org, &id, force),
        )
    }

    fn get_role<'a>(
        &'a self,
        org: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, Option<access::RoleRow>> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.r(move |tx| teams::get_role(tx, &org, &id))
    }

    fn list_roles<'a>(
        &'a self,
        org: &'a str,
        purpose: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<access::RoleRow>> {
        let (org, purpose) = (org.to_owned(), purpose.map(str::to_owned));
        self.r(move |tx| teams::list_roles(tx, &org, purpose.as_deref()))
    }

    fn set_team_role<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        role_id: Option<&'a str>,
        notes: Notes,
    ) -> StoreFuture<'a, bool> {
        let (org, team, id) = (org.to_owned(), team.to_owned(), role_id.map(str::to_owned));
        self.wn(
            notes,
            |done| *done,
            move |tx| teams::set_team_role(tx, &org, &team, id.as_deref()),
        )
    }

    fn set_stack_grant(
        &self,
        stack_id: i64,
        grantee: Grantee,
        permission: StackPermission,
        notes: Notes,
    ) -> StoreFuture<'_, ()> {
        self.wn(
            notes,
            |_| true,
            move |tx| teams::grant(tx, stack_id, &grantee, permission),
        )
    }

    fn stack_grants(&self, stack_id: i64) -> StoreFuture<'_, Vec<access::StackGrant>> {
        self.r(move |tx| teams::stack_grants(tx, stack_id))
    }

    fn resolve_token(&self, hash: Vec<u8>) -> StoreFuture<'_, Option<Principal>> {
        self.r(move |tx| people::resolve_token(tx, &hash))
    }

    fn list_tokens_of(&self, filter: TokenFilter) -> StoreFuture<'_, Vec<TokenRow>> {
        self.r(move |tx| tokens::list_filtered(tx, &filter))
    }

    fn create_trust_policy(&self, policy: access::TrustPolicyRow) -> StoreFuture<'_, ()> {
        self.w(move |tx| logins::create_trust_policy(tx, &policy))
    }

    fn list_trust_policies<'a>(
        &'a self,
        org: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<access::TrustPolicyRow>> {
        let org = org.map(str::to_owned);
        self.r(move |tx| logins::list_trust_policies(tx, org.as_deref()))
    }

    fn delete_trust_policy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let id = id.to_owned();
        self.w(move |tx| logins::delete_trust_policy(tx, &id))
    }

    fn create_login_session(&self, session: access::LoginSession) -> StoreFuture<'_, ()> {
        self.w(move |tx| logins::create_login_session(tx, &session))
    }

    fn take_login_session<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Option<access::LoginSession>> {
        let id = id.to_owned();
        self.w(move |tx| logins::take_login_session(tx, &id, now))
    }
}
