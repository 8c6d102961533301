//! `floopy-gateway admin ...`: manage the control database without SQL until
//! the management API exists. Every command runs the migrations first, so it
//! also works on an empty database.

use std::time::Duration;

use uuid::Uuid;

use super::postgres::{connect, describe};
use crate::config::is_valid_slug;
use crate::model::{hash_key, Environment, Plan};

pub const USAGE: &str = "usage: floopy-gateway admin [--database-url URL] COMMAND [OPTIONS]
  (the URL may also come from DATABASE_URL)

  migrate
  create-org      --name NAME [--plan free|starter|pro|enterprise] [--id UUID]
  create-project  --org ORG --name NAME --slug SLUG [--description TEXT] [--color #rrggbb] [--icon ICON] [--id UUID]
  archive-project --org ORG --project PROJECT
  delete-project  --org ORG --project PROJECT
  create-key      --org ORG --name NAME [--environment development|staging|production|other]
                  [--project PROJECT] [--default-project PROJECT]
                  (prints the key string once; only its SHA-256 is stored)
  revoke-key      --key KEY_ID
  set-limits      --org ORG --environment ENV [--rpm N] [--monthly-cost-usd USD]";

/// An admin command's failure, printed as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(String);

fn err(message: impl Into<String>) -> AdminError {
    AdminError(message.into())
}

/// Parsed `--flag value` pairs.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, AdminError> {
        let mut flags = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| err(format!("unexpected argument {arg:?}")))?;
            let value = it
                .next()
                .ok_or_else(|| err(format!("--{name} needs a value")))?;
            flags.push((name.to_string(), value.clone()));
        }
        Ok(Flags(flags))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    fn required(&mut self, name: &str) -> Result<String, AdminError> {
        self.take(name)
            .ok_or_else(|| err(format!("--{name} is required")))
    }

    fn uuid(&mut self, name: &str) -> Result<Option<Uuid>, AdminError> {
        self.take(name)
            .map(|v| Uuid::try_parse(&v).map_err(|_| err(format!("--{name}: {v:?} is not a UUID"))))
            .transpose()
    }

    fn finish(self) -> Result<(), AdminError> {
        match self.0.first() {
            Some((name, _)) => Err(err(format!("unknown option --{name}"))),
            None => Ok(()),
        }
    }
}

/// A new key string: `fpk_` and 40 base62 characters from the OS's
/// random source (about 238 bits).
pub fn generate_key() -> Result<String, AdminError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut key = String::from("fpk_");
    let mut buf = [0u8; 64];
    while key.len() < 44 {
        getrandom::fill(&mut buf).map_err(|e| err(format!("no randomness: {e}")))?;
        // 248 = 4 * 62: rejecting higher bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if key.len() == 44 {
                break;
            }
            key.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(key)
}

/// Runs `admin` with its arguments (after the word `admin`); returns what to
/// print.
pub async fn run(args: &[String]) -> Result<String, AdminError> {
    let mut args = args.to_vec();
    let url = match args.iter().position(|a| a == "--database-url") {
        Some(i) if i + 1 < args.len() => {
            let url = args.remove(i + 1);
            args.remove(i);
            url
        }
        Some(_) => return Err(err("--database-url needs a value")),
        None => std::env::var("DATABASE_URL")
            .map_err(|_| err("give --database-url URL or set DATABASE_URL"))?,
    };
    let Some((command, rest)) = args.split_first() else {
        return Err(err(USAGE));
    };
    let mut flags = Flags::parse(rest)?;
    let mut conn = connect(&url, Duration::from_secs(5))
        .await
        .map_err(|e| err(e.to_string()))?;
    super::migrate::migrate(&mut conn.client)
        .await
        .map_err(|e| err(format!("control database {}: {e}", describe(&url))))?;
    let client = &conn.client;
    let db = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => err(format!(
            "rejected by the database: {}{}",
            db.message(),
            db.constraint()
                .map(|c| format!(" (constraint {c})"))
                .unwrap_or_default()
        )),
        None => err(e.to_string()),
    };
    let output = match command.as_str() {
        "migrate" => "migrations applied\n".to_string(),
        "create-org" => {
            let name = flags.required("name")?;
            let plan = flags.take("plan").unwrap_or_else(|| "free".into());
            if Plan::parse(&plan).is_none() {
                return Err(err(format!(
                    "--plan: {plan:?} is not one of free, starter, pro, enterprise"
                )));
            }
            let id = flags.uuid("id")?.unwrap_or_else(Uuid::now_v7);
            flags.finish()?;
            client
                .execute(
                    "INSERT INTO organizations (id, name, plan) VALUES ($1, $2, $3::text::floopy_plan)",
                    &[&id, &name, &plan],
                )
                .await
                .map_err(db)?;
            format!("{id}\n")
        }
        "create-project" => {
            let org = flags.uuid("org")?.ok_or_else(|| err("--org is required"))?;
            let name = flags.required("name")?;
            let slug = flags.required("slug")?;
            if !is_valid_slug(&slug) {
                return Err(err(format!(
                    "--slug: {slug:?} is not a slug (lowercase letters, digits and single hyphens, 1 to 63 characters)"
                )));
            }
            let description = flags.take("description");
            let color = flags.take("color");
            let icon = flags.take("icon");
            let id = flags.uuid("id")?.unwrap_or_else(Uuid::now_v7);
            flags.finish()?;
            client
                .execute(
                    "INSERT INTO projects (org_id, id, name, slug, description, color, icon)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&org, &id, &name, &slug, &description, &color, &icon],
                )
                .await
                .map_err(db)?;
            format!("{id}\n")
        }
        "archive-project" | "delete-project" => {
            let org = flags.uuid("org")?.ok_or_else(|| err("--org is required"))?;
            let project = flags
                .uuid("project")?
                .ok_or_else(|| err("--project is required"))?;
            flags.finish()?;
            let sql = if command == "archive-project" {
                "UPDATE projects SET archived = true WHERE org_id = $1 AND id = $2"
            } else {
                "DELETE FROM projects WHERE org_id = $1 AND id = $2"
            };
            match client.execute(sql, &[&org, &project]).await.map_err(db)? {
                0 => return Err(err(format!("no project {project} in organization {org}"))),
                _ => format!("{command}: {project}\n"),
            }
        }
        "create-key" => {
            let org = flags.uuid("org")?.ok_or_else(|| err("--org is required"))?;
            let name = flags.required("name")?;
            let environment = flags.take("environment");
            if let Some(env) = &environment {
                if Environment::parse(env).is_none() {
                    return Err(err(format!(
                        "--environment: {env:?} is not one of development, staging, production, other"
                    )));
                }
            }
            let project = flags.uuid("project")?;
            let default_project = flags.uuid("default-project")?;
            flags.finish()?;
            let id = Uuid::now_v7();
            let secret = generate_key()?;
            let hash = hash_key(secret.as_bytes()).to_vec();
            client
                .execute(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, environment, project_id, default_project_id)
                     VALUES ($1, $2, $3, $4, $5::text::floopy_environment, $6, $7)",
                    &[&id, &org, &name, &hash, &environment, &project, &default_project],
                )
                .await
                .map_err(db)?;
            format!("key id: {id}\nkey:    {secret}\n(the key is shown once; only its SHA-256 is stored)\n")
        }
        "revoke-key" => {
            let key = flags.uuid("key")?.ok_or_else(|| err("--key is required"))?;
            flags.finish()?;
            let n = client
                .execute(
                    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                    &[&key],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(err(format!("no active key {key}")));
            }
            format!("revoked {key}\n")
        }
        "set-limits" => {
            let org = flags.uuid("org")?.ok_or_else(|| err("--org is required"))?;
            let env = flags.required("environment")?;
            if Environment::parse(&env).is_none() {
                return Err(err(format!(
                    "--environment: {env:?} is not one of development, staging, production, other"
                )));
            }
            let rpm = flags
                .take("rpm")
                .map(|v| {
                    v.parse::<i32>()
                        .map_err(|_| err(format!("--rpm: {v:?} is not a number")))
                })
                .transpose()?;
            let cost = flags
                .take("monthly-cost-usd")
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|usd| usd.is_finite() && *usd >= 0.0)
                        .map(|usd| (usd * 1_000_000.0).round() as i64)
                        .ok_or_else(|| err(format!("--monthly-cost-usd: {v:?} is not an amount")))
                })
                .transpose()?;
            flags.finish()?;
            client
                .execute(
                    "INSERT INTO environment_limits (org_id, environment, rpm, monthly_cost_micro_usd)
                     VALUES ($1, $2::text::floopy_environment, $3, $4)
                     ON CONFLICT (org_id, environment)
                     DO UPDATE SET rpm = EXCLUDED.rpm, monthly_cost_micro_usd = EXCLUDED.monthly_cost_micro_usd",
                    &[&org, &env, &rpm, &cost],
                )
                .await
                .map_err(db)?;
            format!("limits of {env} set\n")
        }
        other => return Err(err(format!("unknown admin command {other:?}\n{USAGE}"))),
    };
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert!(crate::config::is_valid_key_string(&a), "{a}");
        assert_eq!(a.len(), 44);
        assert_ne!(a, b);
    }
}
