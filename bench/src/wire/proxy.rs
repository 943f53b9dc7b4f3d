//! Counting what the gateway sends to Postgres, from the wire: a TCP proxy between the
//! gateway and the server that forwards every byte unchanged and reads the frontend half
//! of the protocol (PostgreSQL's "Frontend/Backend Protocol", chapter 55 of its manual)
//! on the way. It counts statements (each `Execute` of the extended protocol, each
//! statement of a simple `Query`) and round trips, and records each statement's SQL text
//! with the parameters it was bound with. A `Sync` or a simple `Query` asks for one
//! `ReadyForQuery`; one sent while an earlier one is still unanswered rides in the same
//! round trip (sqlx sends a queued `ROLLBACK` and its release `Sync` in one write), so
//! the proxy also reads the server's half for its `ReadyForQuery` messages.
//!
//! It must never change what passes through, and it records a message before forwarding
//! it: when the gateway has its answer, the message that caused it is in the capture.
//! Only for counting; the load runs without it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

use super::sql::{Param, Reader, Statement, split_simple_query};

/// `SSLRequest` and `GSSENCRequest`: untyped messages a client may send before its
/// `StartupMessage`.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// What the proxy saw since the last [`Proxy::take`], over all connections.
#[derive(Debug, Default)]
pub struct Capture {
    /// Every statement, in the order the server received them.
    pub statements: Vec<Statement>,
    /// Times a client waited for the server: a `Sync` or simple `Query` sent while
    /// nothing it asked for earlier was unanswered.
    pub round_trips: usize,
    /// Of those, `Sync`s that ended no statement (a ping: sqlx pings with a bare
    /// `Sync`; or a statement prepared apart from its execution), each as the number of
    /// statements received before it.
    pub empty_round_trips: Vec<usize>,
    /// `Parse` messages: statements prepared (a statement cache warms up with them).
    pub parses: usize,
    /// The connections that sent anything (each numbered by the proxy as it came).
    pub connections: BTreeSet<usize>,
}

/// A running proxy; dropping it closes every connection through it.
pub struct Proxy {
    /// `host:port` to give the gateway instead of the server's.
    pub address: String,
    capture: Arc<Mutex<Capture>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free local port and relays each connection to `upstream`.
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let capture = Arc::new(Mutex::new(Capture::default()));
        let shared = capture.clone();
        let task = tokio::spawn(async move {
            // Owned here, so aborting this task ends every relay.
            let mut relays = JoinSet::new();
            let mut number = 0;
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, capture) = (upstream.clone(), shared.clone());
                number += 1;
                relays.spawn(async move {
                    match relay(client, number, &upstream, &capture).await {
                        // A gateway that exits resets its connections: not worth a line.
                        Err(err) if !is_reset(&err) => {
                            eprintln!("proxy: a connection ended with an error: {err:#}");
                        }
                        _ => {}
                    }
                });
                // Reap finished relays so the set does not grow with every connection.
                while relays.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            address,
            capture,
            task,
        })
    }

    /// Waits (at most `limit`) until what the gateway sends after a request's answer
    /// has arrived: a query's `ROLLBACK` goes out after its response, in one write with
    /// sqlx's `Sync` as the connection goes back to its pool (`PgTx::end_on_release`); a
    /// mutation's `COMMIT` before its answer, its `Sync` after. Settled means nothing
    /// was sent, or the last statement ended a transaction and a `Sync` came after it.
    pub async fn settle(&self, limit: Duration) -> anyhow::Result<()> {
        let settled = || {
            self.capture.lock().is_ok_and(|capture| {
                let Some(last) = capture.statements.last() else {
                    return true;
                };
                let ends = ["COMMIT", "ROLLBACK"]
                    .iter()
                    .any(|end| last.sql.trim().eq_ignore_ascii_case(end));
                ends && capture.empty_round_trips.last() == Some(&capture.statements.len())
            })
        };
        tokio::time::timeout(limit, async {
            while !settled() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .context("the gateway did not end its transaction after answering")
    }

    /// What was seen since the previous call; starts a new capture.
    pub fn take(&self) -> Capture {
        self.capture
            .lock()
            .map(|mut capture| std::mem::take(&mut *capture))
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one client connection: the untyped start-up exchange as it comes, then both
/// halves message by message, client messages observed before they are forwarded and
/// the server's `ReadyForQuery` messages counted off the client's outstanding requests.
async fn relay(
    client: TcpStream,
    number: usize,
    upstream: &str,
    capture: &Mutex<Capture>,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let mut from_client = BufReader::new(client_read);
    let mut from_server = BufReader::new(server_read);
    // Untyped start-up messages: length, then a code. The server answers an encryption
    // request with one untyped byte (`N`: go on in plain text).
    loop {
        let length = from_client.read_u32().await?;
        let body = read_body(&mut from_client, length).await?;
        server_write.write_all(&length.to_be_bytes()).await?;
        server_write.write_all(&body).await?;
        let code = body
            .get(..4)
            .and_then(|code| code.try_into().ok())
            .map(u32::from_be_bytes);
        if !code.is_some_and(|code| ENCRYPTION_REQUESTS.contains(&code)) {
            break;
        }
        let answer = from_server.read_u8().await?;
        client_write.write_all(&[answer]).await?;
    }
    let outstanding = AtomicUsize::new(0);
    let backward = async {
        while let Some((tag, frame)) = read_frame(&mut from_server).await? {
            if tag == b'Z' {
                // Counted before it is forwarded: the client sends its next request
                // only once it has this answer, so that request sees the count fall.
                let _ = outstanding
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
            client_write.write_all(&frame).await?;
        }
        client_write.shutdown().await?;
        anyhow::Ok(())
    };
    let forward = async {
        let mut session = Session::default();
        while let Some((tag, frame)) = read_frame(&mut from_client).await? {
            if matches!(tag, b'Q' | b'S') {
                let waiting = outstanding.fetch_add(1, Ordering::SeqCst) > 0;
                session.pipelined = waiting;
            }
            if let Ok(mut capture) = capture.lock() {
                capture.connections.insert(number);
                session.observe(tag, &frame[5..], &mut capture);
            }
            server_write.write_all(&frame).await?;
        }
        server_write.shutdown().await?;
        anyhow::Ok(())
    };
    tokio::try_join!(forward, backward)?;
    Ok(())
}

/// The next typed message, whole (tag, length and body), or `None` at the end of the
/// stream.
async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    let tag = match reader.read_u8().await {
        Ok(tag) => tag,
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let length = reader.read_u32().await?;
    let body = read_body(reader, length).await?;
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(tag);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(Some((tag, frame)))
}

fn is_reset(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|err| err.kind() == std::io::ErrorKind::ConnectionReset)
}

/// A message's body: `length` counts itself (4 bytes) and the body.
async fn read_body(reader: &mut (impl AsyncRead + Unpin), length: u32) -> anyhow::Result<Vec<u8>> {
    let size = usize::try_from(length)?
        .checked_sub(4)
        .context("a message shorter than its length field")?;
    let mut body = vec![0; size];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// One connection's prepared statements and bound portals, by name.
#[derive(Default)]
struct Session {
    prepared: HashMap<String, Prepared>,
    portals: HashMap<String, Statement>,
    /// Whether an `Execute` was sent since the last `Sync`.
    executed: bool,
    /// Whether the `Sync` or `Query` being observed was sent while an earlier one was
    /// unanswered: it shares that one's round trip.
    pipelined: bool,
}

/// A `Parse`d statement: its SQL and the parameter types it declared.
struct Prepared {
    sql: String,
    types: Vec<u32>,
}

impl Session {
    /// Records what a frontend message means; a malformed one is forwarded unrecorded
    /// (the server will say what is wrong with it).
    fn observe(&mut self, tag: u8, body: &[u8], capture: &mut Capture) {
        let mut reader = Reader(body);
        let _ =
            match tag {
                b'Q' => reader.cstr().map(|sql| {
                    capture.round_trips += usize::from(!self.pipelined);
                    capture.statements.extend(
                        split_simple_query(&sql)
                            .into_iter()
                            .enumerate()
                            .map(|(i, sql)| Statement {
                                sql,
                                same_query_as_previous: i > 0,
                                ..Statement::default()
                            }),
                    );
                }),
                b'P' => self.parse(&mut reader).map(|()| capture.parses += 1),
                b'B' => self.bind(&mut reader),
                b'E' => reader.cstr().map(|portal| {
                    let statement = self.portals.get(&portal).cloned().unwrap_or(Statement {
                        sql: format!("<execute of unknown portal {portal:?}>"),
                        ..Statement::default()
                    });
                    capture.statements.push(statement);
                    self.executed = true;
                }),
                b'S' => {
                    capture.round_trips += usize::from(!self.pipelined);
                    if !std::mem::take(&mut self.executed) {
                        capture.empty_round_trips.push(capture.statements.len());
                    }
                    Some(())
                }
                b'C' => reader.u8().zip(reader.cstr()).map(|(kind, name)| {
                    if kind == b'S' {
                        self.prepared.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }),
                _ => Some(()),
            };
    }

    fn parse(&mut self, reader: &mut Reader<'_>) -> Option<()> {
        let name = reader.cstr()?;
        let sql = reader.cstr()?;
        let count = reader.i16()?;
        let types = (0..count).map(|_| reader.u32()).collect::<Option<_>>()?;
        self.prepared.insert(name, Prepared { sql, types });
        Some(())
    }

    fn bind(&mut self, reader: &mut Reader<'_>) -> Option<()> {
        let portal = reader.cstr()?;
        let name = reader.cstr()?;
        let format_count = reader.i16()?;
        let formats: Vec<i16> = (0..format_count)
            .map(|_| reader.i16())
            .collect::<Option<_>>()?;
        let count = reader.i16()?;
        let prepared = self.prepared.get(&name);
        let mut params = Vec::new();
        for i in 0..usize::try_from(count).ok()? {
            let length = reader.i32()?;
            let value = match usize::try_from(length) {
                Ok(length) => Some(reader.bytes(length)?.to_vec()),
                Err(_) => None,
            };
            let binary = match formats.as_slice() {
                [] => false,
                [one] => *one == 1,
                all => *all.get(i)? == 1,
            };
            params.push(Param {
                type_oid: prepared.and_then(|p| p.types.get(i).copied()).unwrap_or(0),
                binary,
                value,
            });
        }
        let sql = prepared.map_or_else(
            || format!("<bind of unknown statement {name:?}>"),
            |p| p.sql.clone(),
        );
        self.portals.insert(
            portal,
            Statement {
                sql,
                params,
                ..Statement::default()
            },
        );
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frontend message body from its fields.
    fn body(fields: &[&[u8]]) -> Vec<u8> {
        fields.concat()
    }

    #[test]
    fn extended_and_simple_queries_are_counted_with_their_parameters() {
        let mut session = Session::default();
        let mut capture = Capture::default();
        let id = 7_i64.to_be_bytes();
        // A bare Sync (sqlx's ping), then Parse/Bind/Execute/Sync of a prepared
        // statement with one binary int8, then a simple Query of two statements.
        session.observe(b'S', &[], &mut capture);
        session.observe(
            b'P',
            &body(&[
                b"s1\0select $1\0",
                &1_i16.to_be_bytes(),
                &20_u32.to_be_bytes(),
            ]),
            &mut capture,
        );
        let bind = body(&[
            b"\0s1\0",
            &1_i16.to_be_bytes(),
            &1_i16.to_be_bytes(),
            &1_i16.to_be_bytes(),
            &8_i32.to_be_bytes(),
            &id,
            &0_i16.to_be_bytes(),
        ]);
        session.observe(b'B', &bind, &mut capture);
        session.observe(b'E', &body(&[b"\0", &0_i32.to_be_bytes()]), &mut capture);
        session.observe(b'S', &[], &mut capture);
        session.observe(b'Q', b"BEGIN; COMMIT\0", &mut capture);

        assert_eq!(capture.round_trips, 3);
        assert_eq!(capture.empty_round_trips, [0]);
        assert_eq!(capture.parses, 1);
        let sql: Vec<String> = capture
            .statements
            .iter()
            .map(|s| s.inlined().expect("inlines"))
            .collect();
        assert_eq!(sql, ["select '7'::int8", "BEGIN", "COMMIT"]);
        let joined: Vec<bool> = capture
            .statements
            .iter()
            .map(|s| s.same_query_as_previous)
            .collect();
        assert_eq!(joined, [false, false, true]);
    }

    #[test]
    fn a_request_sent_before_the_previous_one_is_answered_shares_its_round_trip() {
        let mut session = Session::default();
        let mut capture = Capture::default();
        // sqlx's queued `ROLLBACK`, then its release `Sync` in the same write.
        session.observe(b'Q', b"ROLLBACK\0", &mut capture);
        session.pipelined = true;
        session.observe(b'S', &[], &mut capture);
        assert_eq!(capture.round_trips, 1);
        assert_eq!(capture.empty_round_trips, [1]);
    }
}
