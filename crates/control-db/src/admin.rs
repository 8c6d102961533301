//! `floopy-gateway admin ...`: the operator's commands on the control
//! database, for when there is no management API at hand (bootstrap,
//! scripts, emergencies). Every command runs the migrations first, so it also
//! works on an empty database. The rules of the data model are checked here
//! with `floopy_model`'s words and again by the database's constraints.

use std::time::Duration;

use clap::{Args, Subcommand};
use floopy_model::validate::{is_valid_slug, slug_error};
use floopy_model::{generate_key, usd_to_micro, Environment, Plan};
use uuid::Uuid;

use crate::connect::DbConfig;
use crate::tables::{keys, limits, orgs, projects, Actor, DbError};

/// Manage the control database without SQL.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The control database, `postgres://user@host:port/db[?sslmode=...]`
    /// (its value is never printed: it may hold a password).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Apply the migrations the database lacks.
    Migrate,
    /// Create an organization (and its Default project); prints its id.
    CreateOrg {
        /// 1 to 200 characters.
        #[arg(long)]
        name: String,
        /// free (1 project), starter (3), pro (10) or enterprise (unlimited).
        #[arg(long, default_value = "free", value_parser = parse_plan)]
        plan: Plan,
        /// The org's id (default: a new UUID v7).
        #[arg(long)]
        id: Option<Uuid>,
    },
    /// Create a project in an organization; prints its id.
    CreateProject {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        /// 1 to 100 characters.
        #[arg(long)]
        name: String,
        /// Lowercase letters, digits and single hyphens, 1 to 63 characters.
        #[arg(long, value_parser = parse_slug)]
        slug: String,
        /// Up to 500 characters.
        #[arg(long)]
        description: Option<String>,
        /// `#rrggbb`.
        #[arg(long)]
        color: Option<String>,
        /// A short icon name, 1 to 32 characters.
        #[arg(long)]
        icon: Option<String>,
        /// The project's id (default: a new UUID v7).
        #[arg(long)]
        id: Option<Uuid>,
    },
    /// Archive a project: requests naming it get 404.
    ArchiveProject {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        /// The project's id.
        #[arg(long)]
        project: Uuid,
    },
    /// Delete a project; the keys locked to it are revoked.
    DeleteProject {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        /// The project's id.
        #[arg(long)]
        project: Uuid,
    },
    /// Create an API key; prints the key string once (only its SHA-256 is stored).
    CreateKey {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        /// 1 to 200 characters.
        #[arg(long)]
        name: String,
        /// development, staging, production or other; limits are per environment.
        #[arg(long, value_parser = parse_environment)]
        environment: Option<Environment>,
        /// Lock the key to this project.
        #[arg(long)]
        project: Option<Uuid>,
        /// The project of requests that name none.
        #[arg(long)]
        default_project: Option<Uuid>,
    },
    /// Revoke an API key.
    RevokeKey {
        /// The key's id (as `create-key` printed it).
        #[arg(long)]
        key: Uuid,
    },
    /// Set an environment's limits (an absent limit is removed).
    SetLimits {
        /// The organization's id.
        #[arg(long)]
        org: Uuid,
        /// development, staging, production or other.
        #[arg(long, value_parser = parse_environment)]
        environment: Environment,
        /// Requests per minute, all keys of the environment together.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        rpm: Option<i32>,
        /// Monthly cost cap in USD.
        #[arg(long, value_parser = parse_usd)]
        monthly_cost_usd: Option<u64>,
    },
}

fn parse_plan(value: &str) -> Result<Plan, String> {
    Plan::parse(value)
        .ok_or_else(|| format!("{value:?} is not one of free, starter, pro, enterprise"))
}

fn parse_environment(value: &str) -> Result<Environment, String> {
    Environment::parse(value)
        .ok_or_else(|| format!("{value:?} is not one of development, staging, production, other"))
}

fn parse_slug(value: &str) -> Result<String, String> {
    if is_valid_slug(value) {
        Ok(value.to_string())
    } else {
        Err(slug_error(value))
    }
}

fn parse_usd(value: &str) -> Result<u64, String> {
    let usd: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not an amount in USD"))?;
    usd_to_micro(usd).map_err(|e| e.to_string())
}

/// An admin command's failure, printed as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(String);

fn err(message: impl Into<String>) -> AdminError {
    AdminError(message.into())
}

/// A database error in words: the constraint that refused, when one did.
fn db(e: impl Into<DbError>) -> AdminError {
    let e = e.into();
    match e.as_postgres().and_then(|e| e.as_db_error()) {
        Some(db) => err(format!(
            "rejected by the database: {}{}",
            db.message(),
            db.constraint()
                .map(|c| format!(" (constraint {c})"))
                .unwrap_or_default()
        )),
        None => err(e.to_string()),
    }
}

/// Runs one admin command; returns what to print.
pub async fn run(args: AdminArgs) -> Result<String, AdminError> {
    let config = DbConfig::parse(&args.database_url).map_err(|e| err(e.to_string()))?;
    let mut conn = config
        .connect("floopy-admin", Duration::from_secs(5))
        .await
        .map_err(|e| err(e.to_string()))?;
    crate::migrate::migrate(&mut conn.client)
        .await
        .map_err(|e| err(format!("control database {}: {e}", config.target())))?;
    let tx = conn.client.transaction().await.map_err(db)?;
    let output = match args.command {
        AdminCommand::Migrate => "migrations applied\n".to_string(),
        AdminCommand::CreateOrg { name, plan, id } => {
            let id = id.unwrap_or_else(Uuid::now_v7);
            orgs::insert(&tx, Actor::system(id), id, &name, plan)
                .await
                .map_err(db)?;
            format!("{id}\n")
        }
        AdminCommand::CreateProject {
            org,
            name,
            slug,
            description,
            color,
            icon,
            id,
        } => {
            let fields = projects::ProjectFields {
                name: Some(&name),
                slug: Some(&slug),
                description: description.as_deref(),
                color: color.as_deref(),
                icon: icon.as_deref(),
            };
            let id = id.unwrap_or_else(Uuid::now_v7);
            projects::insert(&tx, Actor::system(org), org, id, &fields)
                .await
                .map_err(db)?;
            format!("{id}\n")
        }
        AdminCommand::ArchiveProject { org, project } => {
            let before = projects::lock(&tx, org, project).await.map_err(db)?;
            let before =
                before.ok_or_else(|| err(format!("no project {project} in organization {org}")))?;
            projects::set_archived(&tx, Actor::system(org), &before, true)
                .await
                .map_err(db)?;
            format!("archive-project: {project}\n")
        }
        AdminCommand::DeleteProject { org, project } => {
            let before = projects::lock(&tx, org, project).await.map_err(db)?;
            let before =
                before.ok_or_else(|| err(format!("no project {project} in organization {org}")))?;
            projects::delete(&tx, Actor::system(org), &before)
                .await
                .map_err(db)?;
            format!("delete-project: {project}\n")
        }
        AdminCommand::CreateKey {
            org,
            name,
            environment,
            project,
            default_project,
        } => {
            let secret = generate_key().map_err(|e| err(format!("no randomness: {e}")))?;
            let key = keys::NewKey {
                name: &name,
                environment,
                project_id: project,
                default_project_id: default_project,
                secret: &secret,
            };
            let id = Uuid::now_v7();
            keys::insert(&tx, Actor::system(org), org, id, &key)
                .await
                .map_err(db)?;
            format!("key id: {id}\nkey:    {secret}\n(the key is shown once; only its SHA-256 is stored)\n")
        }
        AdminCommand::RevokeKey { key } => {
            let no_key = || err(format!("no active key {key}"));
            let org = keys::org_of(tx.client(), key).await.map_err(db)?;
            let org = org.ok_or_else(no_key)?;
            let before = keys::lock(&tx, org, key).await.map_err(db)?;
            let before = before.filter(|k| !k.revoked).ok_or_else(no_key)?;
            keys::revoke(&tx, Actor::system(org), &before)
                .await
                .map_err(db)?;
            format!("revoked {key}\n")
        }
        AdminCommand::SetLimits {
            org,
            environment,
            rpm,
            monthly_cost_usd,
        } => {
            let cost = monthly_cost_usd.map(|micro| {
                // usd_to_micro's bound keeps every amount inside a bigint.
                i64::try_from(micro).unwrap_or(i64::MAX)
            });
            limits::set(&tx, Actor::system(org), org, environment, rpm, cost)
                .await
                .map_err(db)?;
            format!("limits of {environment} set\n")
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        admin: AdminArgs,
    }

    fn parse(args: &[&str]) -> Result<AdminArgs, String> {
        let argv = ["admin", "--database-url", "postgres://u@h/d"]
            .iter()
            .chain(args);
        Cli::try_parse_from(argv)
            .map(|cli| cli.admin)
            .map_err(|e| e.to_string())
    }

    fn set_cost(usd: &str) -> Result<AdminArgs, String> {
        let org = Uuid::nil().to_string();
        let args = ["set-limits", "--org", &org, "--environment", "production"];
        parse(&[&args[..], &["--monthly-cost-usd", usd]].concat())
    }

    #[test]
    fn amounts_use_the_one_money_rule() {
        let args = set_cost("12.5").unwrap();
        assert!(matches!(
            args.command,
            AdminCommand::SetLimits {
                monthly_cost_usd: Some(12_500_000),
                ..
            }
        ));
        for bad in ["-1", "1e13", "NaN", "ten"] {
            assert!(
                set_cost(bad).is_err(),
                "{bad} must be refused as the YAML refuses it"
            );
        }
    }

    #[test]
    fn slugs_plans_and_environments_are_checked_before_the_database() {
        let org = Uuid::nil().to_string();
        let e = parse(&[
            "create-project",
            "--org",
            &org,
            "--name",
            "X",
            "--slug",
            "Bad_Slug",
        ])
        .unwrap_err();
        assert!(e.contains("is not a slug"), "{e}");
        let e = parse(&["create-org", "--name", "X", "--plan", "gold"]).unwrap_err();
        assert!(e.contains("free, starter, pro, enterprise"), "{e}");
        let e = parse(&[
            "create-key",
            "--org",
            &org,
            "--name",
            "k",
            "--environment",
            "prod",
        ])
        .unwrap_err();
        assert!(e.contains("development, staging, production, other"), "{e}");
    }
}
