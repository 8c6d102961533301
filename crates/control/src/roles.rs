//! Who may do what: one pure function of (the caller's membership, the
//! action, its object), used by every handler. SPEC section 7:
//!
//! - org `owner` / `admin`: everything in the org, and implicit admin of
//!   every project without being listed as a member; only an owner renames
//!   the org or changes its plan;
//! - org `manager`: creates projects (within the plan quota) and manages the
//!   projects they are assigned to; no org settings, no environment limits;
//! - org `member`: sees only the projects they are a member of, with their
//!   project role;
//! - project `owner`: everything on the project, deletion included; `admin`:
//!   its members, its keys, its settings; `member`: reads it.
//!
//! A refusal is 403, except where the object's existence is not the
//! caller's to know: a project they cannot see is 404, like a project that
//! does not exist (the caller's org membership itself is checked before:
//! another org's objects are 404 too).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Owner,
    Admin,
    Manager,
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Manager => "manager",
            OrgRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<OrgRole> {
        [
            OrgRole::Owner,
            OrgRole::Admin,
            OrgRole::Manager,
            OrgRole::Member,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Owners and admins: every right in the org, every project seen.
    pub fn runs_the_org(self) -> bool {
        matches!(self, OrgRole::Owner | OrgRole::Admin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    Owner,
    Admin,
    Member,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Owner => "owner",
            ProjectRole::Admin => "admin",
            ProjectRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<ProjectRole> {
        [ProjectRole::Owner, ProjectRole::Admin, ProjectRole::Member]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The caller's standing in one org: their org role and their roles on its
/// projects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org_role: OrgRole,
    pub projects: HashMap<Uuid, ProjectRole>,
}

/// What the caller wants to do, with its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadOrg,
    /// Rename, change the plan.
    UpdateOrg,
    CreateProject,
    ReadProject(Uuid),
    /// Update its settings, archive, unarchive.
    UpdateProject(Uuid),
    DeleteProject(Uuid),
    /// Read keys locked to this project (`None`: keys locked to none).
    ReadKeys(Option<Uuid>),
    /// Create, rename, revoke keys locked to this project (`None`: keys
    /// locked to none, the org's own).
    ManageKeys(Option<Uuid>),
    ReadLimits,
    ManageLimits,
    ReadOrgMembers,
    ManageOrgMembers,
    ManageProjectMembers(Uuid),
    ReadAudit,
    /// Read budgets of this project (`None`: the org's own).
    ReadBudgets(Option<Uuid>),
    /// Create, change, delete budgets of this project (`None`: the org's
    /// own), and restore the keys they revoked.
    ManageBudgets(Option<Uuid>),
}

/// The caller's effective role on `project`: their own, or the implicit
/// admin of an org owner or admin.
pub fn project_role(m: &Membership, project: Uuid) -> Option<ProjectRole> {
    let own = m.projects.get(&project).copied();
    match (m.org_role.runs_the_org(), own) {
        (true, Some(ProjectRole::Owner)) => Some(ProjectRole::Owner),
        (true, _) => Some(ProjectRole::Admin),
        (false, own) => own,
    }
}

/// `Ok` when `m` may do `action`; otherwise the refusal to answer.
pub fn authorize(m: &Membership, action: Action) -> Result<(), ApiError> {
    let org = m.org_role;
    let denied = |what: &str| Err(ApiError::Forbidden(format!("your role may not {what}")));
    let sees = |p: Uuid| project_role(m, p).is_some();
    let manages = |p: Uuid| {
        matches!(
            project_role(m, p),
            Some(ProjectRole::Owner | ProjectRole::Admin)
        )
    };
    match action {
        Action::ReadOrg | Action::ReadOrgMembers => Ok(()),
        Action::UpdateOrg if org == OrgRole::Owner => Ok(()),
        Action::UpdateOrg => denied("change the organization (owners only)"),
        Action::CreateProject if org.runs_the_org() || org == OrgRole::Manager => Ok(()),
        Action::CreateProject => denied("create projects"),
        Action::ReadProject(p) if sees(p) => Ok(()),
        Action::ReadProject(_) => Err(ApiError::NotFound("project")),
        Action::UpdateProject(p) | Action::ManageProjectMembers(p) if manages(p) => Ok(()),
        Action::UpdateProject(p) | Action::ManageProjectMembers(p) if !sees(p) => {
            Err(ApiError::NotFound("project"))
        }
        Action::UpdateProject(_) => denied("change this project"),
        Action::ManageProjectMembers(_) => denied("manage this project's members"),
        Action::DeleteProject(p) if project_role(m, p) == Some(ProjectRole::Owner) => Ok(()),
        Action::DeleteProject(_) if org.runs_the_org() => Ok(()),
        Action::DeleteProject(p) if !sees(p) => Err(ApiError::NotFound("project")),
        Action::DeleteProject(_) => denied("delete this project (project owners only)"),
        Action::ReadBudgets(Some(p)) if sees(p) => Ok(()),
        Action::ManageBudgets(Some(p)) if manages(p) => Ok(()),
        Action::ReadBudgets(Some(_)) => Err(ApiError::NotFound("project")),
        Action::ManageBudgets(Some(p)) if !sees(p) => Err(ApiError::NotFound("project")),
        Action::ManageBudgets(Some(_)) => denied("manage this project's budgets"),
        Action::ReadBudgets(None) | Action::ManageBudgets(None) if org.runs_the_org() => Ok(()),
        Action::ReadBudgets(None) | Action::ManageBudgets(None) => {
            denied("see or manage the organization's budgets")
        }
        Action::ReadKeys(Some(p)) if sees(p) => Ok(()),
        Action::ReadKeys(Some(_)) => Err(ApiError::NotFound("project")),
        Action::ManageKeys(Some(p)) if manages(p) => Ok(()),
        Action::ManageKeys(Some(p)) if !sees(p) => Err(ApiError::NotFound("project")),
        Action::ManageKeys(Some(_)) => denied("manage this project's keys"),
        Action::ReadKeys(None) | Action::ManageKeys(None) if org.runs_the_org() => Ok(()),
        Action::ReadKeys(None) => denied("see keys not locked to one of your projects"),
        Action::ManageKeys(None) => denied("manage keys not locked to a project"),
        Action::ReadLimits
        | Action::ManageLimits
        | Action::ManageOrgMembers
        | Action::ReadAudit
            if org.runs_the_org() =>
        {
            Ok(())
        }
        Action::ReadLimits | Action::ManageLimits => denied("see or change environment limits"),
        Action::ManageOrgMembers => denied("manage the organization's members"),
        Action::ReadAudit => denied("read the audit log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);

    fn member(org_role: OrgRole, projects: &[(Uuid, ProjectRole)]) -> Membership {
        Membership {
            org_role,
            projects: projects.iter().copied().collect(),
        }
    }

    fn verdict(m: &Membership, action: Action) -> u16 {
        match authorize(m, action) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn the_matrix_of_roles_and_actions() {
        let owner = member(OrgRole::Owner, &[]);
        let admin = member(OrgRole::Admin, &[]);
        let manager = member(OrgRole::Manager, &[(P, ProjectRole::Owner)]);
        let p_admin = member(OrgRole::Member, &[(P, ProjectRole::Admin)]);
        let p_member = member(OrgRole::Member, &[(P, ProjectRole::Member)]);
        let outsider = member(OrgRole::Member, &[]);
        let people = [&owner, &admin, &manager, &p_admin, &p_member, &outsider];
        // One row per action: the verdict for owner, admin, manager (owner
        // of P), member admin of P, member member of P, member of nothing.
        let rows: &[(Action, [u16; 6])] = &[
            (Action::ReadOrg, [200, 200, 200, 200, 200, 200]),
            (Action::UpdateOrg, [200, 403, 403, 403, 403, 403]),
            (Action::CreateProject, [200, 200, 200, 403, 403, 403]),
            (Action::ReadProject(P), [200, 200, 200, 200, 200, 404]),
            (Action::ReadProject(Q), [200, 200, 404, 404, 404, 404]),
            (Action::UpdateProject(P), [200, 200, 200, 200, 403, 404]),
            (Action::UpdateProject(Q), [200, 200, 404, 404, 404, 404]),
            (Action::DeleteProject(P), [200, 200, 200, 403, 403, 404]),
            (Action::ReadKeys(Some(P)), [200, 200, 200, 200, 200, 404]),
            (Action::ManageKeys(Some(P)), [200, 200, 200, 200, 403, 404]),
            (Action::ReadKeys(None), [200, 200, 403, 403, 403, 403]),
            (Action::ManageKeys(None), [200, 200, 403, 403, 403, 403]),
            (Action::ReadLimits, [200, 200, 403, 403, 403, 403]),
            (Action::ManageLimits, [200, 200, 403, 403, 403, 403]),
            (Action::ReadOrgMembers, [200, 200, 200, 200, 200, 200]),
            (Action::ManageOrgMembers, [200, 200, 403, 403, 403, 403]),
            (
                Action::ManageProjectMembers(P),
                [200, 200, 200, 200, 403, 404],
            ),
            (Action::ReadAudit, [200, 200, 403, 403, 403, 403]),
            (Action::ReadBudgets(Some(P)), [200, 200, 200, 200, 200, 404]),
            (
                Action::ManageBudgets(Some(P)),
                [200, 200, 200, 200, 403, 404],
            ),
            (Action::ReadBudgets(None), [200, 200, 403, 403, 403, 403]),
            (Action::ManageBudgets(None), [200, 200, 403, 403, 403, 403]),
        ];
        for (action, expected) in rows {
            let got: Vec<u16> = people.iter().map(|m| verdict(m, *action)).collect();
            assert_eq!(&got[..], &expected[..], "{action:?}");
        }
    }

    #[test]
    fn org_owners_and_admins_are_implicit_project_admins() {
        let admin = member(OrgRole::Admin, &[]);
        assert_eq!(project_role(&admin, P), Some(ProjectRole::Admin));
        let owner_listed = member(OrgRole::Owner, &[(P, ProjectRole::Owner)]);
        assert_eq!(project_role(&owner_listed, P), Some(ProjectRole::Owner));
        let listed_member = member(OrgRole::Admin, &[(P, ProjectRole::Member)]);
        assert_eq!(
            project_role(&listed_member, P),
            Some(ProjectRole::Admin),
            "a listed role never lowers the implicit admin"
        );
    }
}
