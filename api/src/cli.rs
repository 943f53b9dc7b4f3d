//! The subcommands of the `flashfusion` binary. `anyhow` with context lives here, at
//! the edge; everything below returns typed errors.

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};

use crate::{
    app::{self, AppState},
    auth::{Email, Identity, Role},
    config::{Cli, Command, LogFormat, MigrateAction, TokenAction, TokenRole, WorkerArgs},
    db::Database,
    schema, worker,
};

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.config.effective_log_format(), &cli.config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => app::serve(AppState::init(cli.config).await?).await,
        Command::Schema => {
            print!("{}", schema::sdl());
            Ok(())
        }
        Command::Migrate { action } => {
            if matches!(action, MigrateAction::Down { yes: false }) {
                anyhow::bail!(
                    "migrate down drops every table and its data; if that is what you want, \
                     run it again with --yes"
                );
            }
            // As the schema's owner: DATABASE_MIGRATION_URL, else DATABASE_URL. Two
            // connections at least: `up` holds its lock on one and migrates on another.
            let db = Database::connect(
                cli.config.migration_url().expose(),
                cli.config.db_max_connections.max(2),
            )
            .await?;
            let conn = db.connection();
            match action {
                MigrateAction::Up => db.migrate().await?,
                MigrateAction::Down { .. } => Migrator::down(conn, None)
                    .await
                    .context("migration failed")?,
                MigrateAction::Status => {}
            }
            for migration in Migrator::get_migration_with_status(conn).await? {
                println!(
                    "{:<10} {}",
                    format!("{:?}", migration.status()),
                    migration.name()
                );
            }
            Ok(())
        }
        Command::Token {
            action: TokenAction::Issue { email, role, ttl },
        } => {
            let state = AppState::init(cli.config).await?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!(e.message()))?;
            let user = issue_for(&state, &email, role)
                .await
                .map_err(|e| anyhow::anyhow!(e.message()))?
                .with_context(|| {
                    format!("no account with email {}; sign up first", email.as_str())
                })?;
            let role = match role {
                TokenRole::User => Role::User,
                TokenRole::Admin => Role::Admin,
                TokenRole::Service => Role::Service,
            };
            let (token, expires_at) = state
                .tokens
                .issue(user.id, role, ttl)
                .map_err(|e| anyhow::anyhow!(e.message()))?;
            eprintln!(
                "token for {} ({}) expires at {expires_at}",
                email.as_str(),
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        Command::Worker(args) => run_worker(args).await,
    }
}

/// `flashfusion worker --simulate`: the simulator until Ctrl-C.
async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.simulate,
        "only the simulator exists: run `flashfusion worker --simulate`"
    );
    let token = args.token.context(
        "the worker needs a service token: --token or FLASHFUSION_WORKER_TOKEN \
         (`flashfusion token issue --role service --email ...` issues one)",
    )?;
    let simulation = worker::Simulation {
        endpoint: args.endpoint,
        token,
        step_delay: args.step_delay,
        fail_every: worker::FAIL_EVERY,
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: run until killed.
            std::future::pending::<()>().await;
        }
    };
    worker::run(simulation, ctrl_c).await?;
    Ok(())
}

/// Looks the account up as the gateway's service identity (as sign-in does) and, for an
/// admin token, promotes it acting as that admin, so the policies and the role-change
/// trigger see the same rules as over the API.
async fn issue_for(
    state: &AppState,
    email: &Email,
    role: TokenRole,
) -> Result<Option<entity::users::Model>, crate::error::ApiError> {
    let tx = state.db.begin(&Identity::SERVICE, false).await?;
    let Some(user) = crate::domains::accounts::find_by_email(tx.conn(), email).await? else {
        return Ok(None);
    };
    let mut user = user;
    if role == TokenRole::Admin {
        tx.handle()
            .act_as(&Identity::user(user.id, Role::Admin))
            .await?;
        crate::domains::accounts::promote_to_admin(tx.conn(), user.id).await?;
        user.role = entity::users::UserRole::Admin;
    }
    tx.finish(true).await?;
    Ok(Some(user))
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
