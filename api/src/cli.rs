//! The subcommands of the `flashfusion` binary. `anyhow` with context lives here, at
//! the edge; everything below returns typed errors.

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};

use crate::{
    accounts,
    app::{self, AppState},
    auth::{Email, Role},
    config::{Cli, Command, LogFormat, MigrateAction, TokenAction, TokenRole},
    graphql,
};

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.config.log_format, &cli.config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => app::serve(AppState::init(cli.config).await?).await,
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Migrate { action } => {
            let state = AppState::init(cli.config).await?;
            let conn = state.db.connection();
            match action {
                MigrateAction::Up => Migrator::up(conn, None).await,
                MigrateAction::Down => Migrator::down(conn, None).await,
                MigrateAction::Status => Migrator::status(conn).await,
            }
            .context("migration failed")
        }
        Command::Token {
            action: TokenAction::Issue { email, role, ttl },
        } => {
            let state = AppState::init(cli.config).await?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!(e.message()))?;
            let conn = state.db.connection();
            let user = accounts::find_by_email(conn, &email)
                .await
                .map_err(|e| anyhow::anyhow!(e.message()))?
                .with_context(|| {
                    format!("no account with email {}; sign up first", email.as_str())
                })?;
            let (user, role) = match role {
                TokenRole::User => (user, Role::User),
                TokenRole::Service => (user, Role::Service),
                TokenRole::Admin => (
                    accounts::promote_to_admin(conn, user)
                        .await
                        .map_err(|e| anyhow::anyhow!(e.message()))?,
                    Role::Admin,
                ),
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
    }
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
