//! The service on PostgreSQL (`--only postgres`): status checks and session creations
//! with one instance and with two on the same database, beside a bare handler and raw
//! durable one-row inserts into the same database, measured in the same run; and
//! charges through the ledger, verified afterwards.

use crate::load;
use crate::process::Server;
use crate::scenarios::{
    charges, create_sessions, creation_load_across, http, latency, ratio, row, start_service_on,
    status_load_across, Row,
};
use crate::Args;
use sqlx::Connection;
use std::sync::Arc;

/// A schema of its own in the benchmark's database, dropped when done.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    async fn new(base: &str, name: &str) -> anyhow::Result<Self> {
        let mut db = sqlx::PgConnection::connect(base).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .execute(&mut db)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut db)
            .await?;
        db.close().await?;
        Ok(Schema {
            base: base.to_string(),
            name: name.to_string(),
        })
    }

    /// The database URL whose connections use this schema.
    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        let mut db = sqlx::PgConnection::connect(&self.base).await?;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut db)
            .await?;
        Ok(db.close().await?)
    }
}

/// One-row transactions into the same database, as many at once as the load has
/// connections: the rate its commits allow.
async fn raw_inserts(url: &str, args: &Args) -> anyhow::Result<load::Stats> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.concurrency as u32)
        .connect(url)
        .await?;
    sqlx::query(
        "CREATE TABLE raw (id TEXT PRIMARY KEY, merchant TEXT, amount BIGINT, currency TEXT, \
                           status TEXT, created BIGINT)",
    )
    .execute(&pool)
    .await?;
    let stats = load::run(args.concurrency, args.duration(), move |i| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO raw VALUES ($1, 'mer', 200, 'usd', 'pending', 0)")
                .bind(format!("row-{i}"))
                .execute(&pool)
                .await
                .is_ok()
        }
    })
    .await;
    Ok(stats)
}

pub async fn rows(args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let client = http(args.concurrency);
    let mut db = sqlx::PgConnection::connect(&args.postgres).await?;
    let synchronous: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    let service_schema = Schema::new(&args.postgres, "walleot_bench").await?;
    let url = service_schema.url();
    let one = start_service_on(&url, None, None)?;
    let two = start_service_on(&url, None, Some(one.key.clone()))?;
    let ids = Arc::new(create_sessions(&client, &one, 100).await?);
    let baseline = Server::start(&["baseline", "127.0.0.1:0"], None)?;
    let bare = status_load_across(
        &client,
        std::slice::from_ref(&baseline.base),
        "",
        Arc::new(vec!["x".into()]),
        args,
    )
    .await;
    drop(baseline);
    let both = [one.server.base.clone(), two.server.base.clone()];
    for (label, bases) in [("one instance", &both[..1]), ("two instances", &both[..])] {
        let status = status_load_across(&client, bases, &one.key, ids.clone(), args).await;
        rows.push(row(
            format!(
                "status checks/s on PostgreSQL, {label} ({} connections)",
                args.concurrency
            ),
            format!(
                "{:.0} ({}, {} errors)",
                status.per_second(),
                latency(&status),
                status.errors
            ),
            format!(
                "{:.0} ({}) minimal axum handler",
                bare.per_second(),
                latency(&bare)
            ),
            ratio(status.per_second(), bare.per_second()),
        ));
    }
    let raw_schema = Schema::new(&args.postgres, "walleot_bench_raw").await?;
    let raw = raw_inserts(&raw_schema.url(), args).await?;
    raw_schema.drop_now().await?;
    for (label, bases) in [("one instance", &both[..1]), ("two instances", &both[..])] {
        let creates = creation_load_across(&client, bases, &one.key, args).await;
        rows.push(row(
            format!(
                "session creations/s on PostgreSQL, {label} (synchronous_commit={synchronous})"
            ),
            format!(
                "{:.0} ({}, {} errors)",
                creates.per_second(),
                latency(&creates),
                creates.errors
            ),
            format!(
                "{:.0} raw one-row inserts/s into the same database, {} connections ({})",
                raw.per_second(),
                args.concurrency,
                latency(&raw)
            ),
            ratio(creates.per_second(), raw.per_second()),
        ));
    }
    drop((one, two));
    service_schema.drop_now().await?;

    let ledger_schema = Schema::new(&args.postgres, "walleot_bench_ledger").await?;
    let (n, per_second, sound) = charges(&ledger_schema.url(), args).await?;
    ledger_schema.drop_now().await?;
    rows.push(row(
        format!(
            "charges/s through the ledger on PostgreSQL ({n} charges, 200 payers, one merchant)"
        ),
        format!(
            "{per_second:.0}; ledger verified afterwards: {}",
            if sound { "consistent" } else { "MISMATCH" }
        ),
        format!("{:.0} raw one-row inserts/s", raw.per_second()),
        ratio(per_second, raw.per_second()),
    ));
    Ok(rows)
}
