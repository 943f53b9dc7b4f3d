//! Seeds the `ai_services` and `agents` catalogs.
//!
//! The rows go in through sea-query statements with typed values (`Uuid`, JSON,
//! `DateTime<Utc>`), so each backend gets the encoding its driver uses (a 16-byte blob for
//! a UUID on SQLite, `uuid` on Postgres). The ids are fixed, so every database (and every
//! test) knows them; `down` deletes these rows (unless tasks still use an agent). Later
//! catalog changes belong in new migrations or in the admin API, not here.

use sea_orm_migration::prelude::*;
use sea_query::error::Error as StatementError;
use serde_json::json;
use uuid::Uuid;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AiServices {
    Table,
    Id,
    Slug,
    Name,
    Provider,
    Model,
    Capabilities,
    // The default snake-casing would give `input_price_per1k`.
    #[sea_orm(iden = "input_price_per_1k")]
    InputPricePer1k,
    #[sea_orm(iden = "output_price_per_1k")]
    OutputPricePer1k,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AgentTasks {
    Table,
    AgentId,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    Slug,
    Name,
    Description,
    Capabilities,
    Config,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

/// One AI service of the seed catalog.
struct AiServiceSeed {
    id: u128,
    slug: &'static str,
    name: &'static str,
    provider: &'static str,
    model: &'static str,
    capabilities: &'static [&'static str],
    /// US dollars per 1,000 tokens.
    input_price_per_1k: f64,
    output_price_per_1k: f64,
}

const AI_SERVICES: &[AiServiceSeed] = &[
    AiServiceSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0000_0001,
        slug: "openai-gpt-4o",
        name: "GPT-4o",
        provider: "openai",
        model: "gpt-4o",
        capabilities: &["chat", "code", "vision"],
        input_price_per_1k: 0.0025,
        output_price_per_1k: 0.01,
    },
    AiServiceSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0000_0002,
        slug: "anthropic-claude-sonnet",
        name: "Claude Sonnet 4.5",
        provider: "anthropic",
        model: "claude-sonnet-4-5",
        capabilities: &["chat", "code", "vision", "tools"],
        input_price_per_1k: 0.003,
        output_price_per_1k: 0.015,
    },
    AiServiceSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0000_0003,
        slug: "google-gemini-pro",
        name: "Gemini 2.5 Pro",
        provider: "google",
        model: "gemini-2.5-pro",
        capabilities: &["chat", "code", "vision", "long-context"],
        input_price_per_1k: 0.00125,
        output_price_per_1k: 0.01,
    },
    AiServiceSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0000_0004,
        slug: "mistral-codestral",
        name: "Codestral",
        provider: "mistral",
        model: "codestral-latest",
        capabilities: &["code", "fill-in-the-middle"],
        input_price_per_1k: 0.0003,
        output_price_per_1k: 0.0009,
    },
];

/// One agent of the seed catalog.
struct AgentSeed {
    id: u128,
    slug: &'static str,
    name: &'static str,
    description: &'static str,
    capabilities: &'static [&'static str],
    /// Slug of the AI service the agent uses by default.
    default_service: &'static str,
    max_attempts: u32,
}

const AGENTS: &[AgentSeed] = &[
    AgentSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0001_0001,
        slug: "code-reviewer",
        name: "Code Reviewer",
        description: "Reviews a change for bugs, security issues and style, and comments on each finding.",
        capabilities: &["review", "security"],
        default_service: "anthropic-claude-sonnet",
        max_attempts: 3,
    },
    AgentSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0001_0002,
        slug: "test-writer",
        name: "Test Writer",
        description: "Writes unit and integration tests for the code it is given and runs them.",
        capabilities: &["tests", "code"],
        default_service: "openai-gpt-4o",
        max_attempts: 3,
    },
    AgentSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0001_0003,
        slug: "refactorer",
        name: "Refactorer",
        description: "Restructures code without changing its behaviour, keeping the tests green.",
        capabilities: &["refactor", "code"],
        default_service: "mistral-codestral",
        max_attempts: 2,
    },
    AgentSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0001_0004,
        slug: "doc-writer",
        name: "Documentation Writer",
        description: "Writes READMEs, API references and doc comments from the code.",
        capabilities: &["docs"],
        default_service: "google-gemini-pro",
        max_attempts: 2,
    },
    AgentSeed {
        id: 0x0193_6b2a_0000_7000_8000_0000_0001_0005,
        slug: "deployer",
        name: "Deployer",
        description: "Builds the project and deploys it to a preview or production environment.",
        capabilities: &["build", "deploy"],
        default_service: "openai-gpt-4o",
        max_attempts: 1,
    },
];

/// On Postgres the catalogs have FORCE ROW LEVEL SECURITY (previous migration), which
/// binds their owner too, and no policy lets the owner write: only a superuser could seed
/// them. So the owner lifts FORCE for the two tables around the seed statements. The
/// migration runs in one transaction there, so no other session ever sees the tables
/// without FORCE.
async fn set_force_rls(manager: &SchemaManager<'_>, force: bool) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let verb = if force { "force" } else { "no force" };
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "alter table ai_services {verb} row level security;\n\
             alter table agents {verb} row level security;"
        ))
        .await?;
    Ok(())
}

fn to_db_err(err: StatementError) -> DbErr {
    DbErr::Migration(format!("building a seed statement: {err}"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let now = chrono::Utc::now();
        set_force_rls(manager, false).await?;

        let mut services = Query::insert();
        services.into_table(AiServices::Table).columns([
            AiServices::Id,
            AiServices::Slug,
            AiServices::Name,
            AiServices::Provider,
            AiServices::Model,
            AiServices::Capabilities,
            AiServices::InputPricePer1k,
            AiServices::OutputPricePer1k,
            AiServices::IsActive,
            AiServices::CreatedAt,
            AiServices::UpdatedAt,
        ]);
        for s in AI_SERVICES {
            services
                .values([
                    Uuid::from_u128(s.id).into(),
                    s.slug.into(),
                    s.name.into(),
                    s.provider.into(),
                    s.model.into(),
                    json!(s.capabilities).into(),
                    s.input_price_per_1k.into(),
                    s.output_price_per_1k.into(),
                    true.into(),
                    now.into(),
                    now.into(),
                ])
                .map_err(to_db_err)?;
        }
        // Idempotent, so `down 1` on a database whose seeded agents are still referenced
        // (see `down`) can be followed by `up` again.
        services.on_conflict(OnConflict::column(AiServices::Id).do_nothing().to_owned());
        manager.execute(services).await?;

        let mut agents = Query::insert();
        agents.into_table(Agents::Table).columns([
            Agents::Id,
            Agents::Slug,
            Agents::Name,
            Agents::Description,
            Agents::Capabilities,
            Agents::Config,
            Agents::IsActive,
            Agents::CreatedAt,
            Agents::UpdatedAt,
        ]);
        for a in AGENTS {
            agents
                .values([
                    Uuid::from_u128(a.id).into(),
                    a.slug.into(),
                    a.name.into(),
                    a.description.into(),
                    json!(a.capabilities).into(),
                    json!({
                        "default_service": a.default_service,
                        "max_attempts": a.max_attempts,
                    })
                    .into(),
                    true.into(),
                    now.into(),
                    now.into(),
                ])
                .map_err(to_db_err)?;
        }
        agents.on_conflict(OnConflict::column(Agents::Id).do_nothing().to_owned());
        manager.execute(agents).await?;
        set_force_rls(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_force_rls(manager, false).await?;
        let agent_ids = AGENTS.iter().map(|a| Uuid::from_u128(a.id));
        manager
            .execute(
                Query::delete()
                    .from_table(Agents::Table)
                    .and_where(Expr::col(Agents::Id).is_in(agent_ids))
                    // `agent_tasks.agent_id` is ON DELETE RESTRICT: an agent that tasks
                    // still use stays (dropping the tables, one migration down, removes it).
                    .and_where(
                        Expr::exists(
                            Query::select()
                                .expr(Expr::val(1))
                                .from(AgentTasks::Table)
                                .and_where(
                                    Expr::col((AgentTasks::Table, AgentTasks::AgentId))
                                        .equals((Agents::Table, Agents::Id)),
                                )
                                .to_owned(),
                        )
                        .not(),
                    )
                    .to_owned(),
            )
            .await?;
        let service_ids = AI_SERVICES.iter().map(|s| Uuid::from_u128(s.id));
        manager
            .execute(
                Query::delete()
                    .from_table(AiServices::Table)
                    .and_where(Expr::col(AiServices::Id).is_in(service_ids))
                    .to_owned(),
            )
            .await?;
        set_force_rls(manager, true).await
    }
}
