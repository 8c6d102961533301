//! Schema migrations of the control database: the SQL files in
//! `migrations/`, embedded in the binary, applied in version order, each
//! once, inside one transaction per file, under an advisory lock so replicas
//! that start together do not race.

use tokio_postgres::Client;

/// (version, name, SQL), in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "control", include_str!("../migrations/0001_control.sql")),
    (2, "usage", include_str!("../migrations/0002_usage.sql")),
    (
        3,
        "control_plane",
        include_str!("../migrations/0003_control_plane.sql"),
    ),
    (4, "budgets", include_str!("../migrations/0004_budgets.sql")),
    (5, "alerts", include_str!("../migrations/0005_alerts.sql")),
    (
        6,
        "revocations",
        include_str!("../migrations/0006_revocations.sql"),
    ),
];

/// An arbitrary constant naming the migration lock.
const LOCK_KEY: i64 = 0x666c_6f6f_7079;

/// Applies the migrations this database lacks; returns how many.
pub async fn migrate(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS floopy_schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_missing(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_missing(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let done = client
            .query_opt(
                "SELECT 1 FROM floopy_schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO floopy_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "control database migration applied");
        applied += 1;
    }
    Ok(applied)
}
