//! # The stage1-kvm host ↔ guest agent protocol, version 1
//!
//! This documentation is the protocol's specification; the crate is its only implementation
//! and is used by both sides: the stage1 host process (and its `enter` / `stop` entrypoints)
//! and the guest agent, PID 1 of the pod's VM. The JSON examples below are checked by the
//! crate's tests against what the crate actually produces.
//!
//! ## Transport and connections
//!
//! Connections are vsock stream connections opened by the host side to the agent, which
//! listens on port [`AGENT_VSOCK_PORT`] (1024) of the guest. Processes other than the VMM
//! reach it through the VMM's Unix socket in the pod directory (`CONNECT 1024\n` →
//! `OK <port>\n`, Firecracker's hybrid vsock); that exchange is below this protocol, which
//! begins with the first byte after it. There are two kinds of connection:
//!
//! * **control** — exactly one per pod, opened by the run process: the agent reports that it
//!   is up, the host starts the apps, the agent streams their output and reports their exits,
//!   the host stops them and shuts the VM down.
//! * **exec** — one per `enter`: runs one process in an app's root and carries its stdin,
//!   stdout, stderr, terminal size, signals and exit status.
//!
//! Every connection is a **handshake** followed by **frames**, each frame carrying one JSON
//! **message**.
//!
//! ## Handshake
//!
//! The initiator (host side) sends an 8-byte preamble; the acceptor (agent) reads all 8
//! bytes, answers with its own 8-byte preamble in every case, and continues only if the
//! answer's status is 0. The initiator sends nothing after its preamble until it has read
//! and checked the answer. See [`handshake`].
//!
//! ```text
//! offset  size  field
//!      0     4  magic     "S1KV" = 53 31 4b 56
//!      4     2  version   u16 big endian, 1 for this version
//!      6     1  kind      1 = control, 2 = exec; the answer echoes the kind asked for
//!      7     1  status    initiator: 0 (ignored by the acceptor); acceptor:
//!                           0 accepted, 1 version mismatch, 2 kind unknown or not served,
//!                           3 bad magic
//! ```
//!
//! A control hello is `53 31 4b 56 00 01 01 00`, its acceptance the same 8 bytes. The answer
//! always carries the acceptor's own magic and version, so on a version mismatch both sides
//! report [`Error::VersionMismatch`] naming both versions. Versions must be equal: host and
//! agent ship in the same stage1 image, and a mismatch means a broken build. Any change of
//! the wire format (a message, a field, a meaning) takes a new version number.
//!
//! ## Frames
//!
//! ```text
//! +---------------------------+------------------------------+
//! | length: u32, big endian   | body: `length` bytes of JSON |
//! +---------------------------+------------------------------+
//! ```
//!
//! `length` counts the body only and is at most [`MAX_FRAME_LEN`] (1 MiB); a receiver
//! rejects a larger one from the 4 header bytes alone, before reading or allocating
//! anything for the body, and a sender refuses to write one. The body is one JSON value in
//! UTF-8, an object with a `"type"` member naming the message. See [`frame`].
//!
//! ## Messages
//!
//! Conventions, shared by every message:
//!
//! * `"type"` is the message's name in snake_case; the other members are its fields.
//!   Unknown types and unknown fields are errors (a new field is a new protocol version).
//!   Fields shown as `null` below are optional values; senders always write them, receivers
//!   also take a missing one as `null`.
//! * **Byte strings** (output, stdin) are standard base64 with padding (RFC 4648 §4), decoded
//!   strictly. Measured on 64 KiB payloads (size of the JSON value / payload size):
//!
//!   | payload                         | array of numbers | hex   | Latin-1 string | base64 |
//!   |---------------------------------|------------------|-------|----------------|--------|
//!   | English text                    | 3.61×            | 2.00× | 1.05×          | 1.33×  |
//!   | `ls -l` output                  | 3.44×            | 2.00× | 1.01×          | 1.33×  |
//!   | coloured tty output (ANSI, CRLF)| 3.49×            | 2.00× | 1.33×          | 1.33×  |
//!   | random bytes                    | 3.57×            | 2.00× | 2.06×          | 1.33×  |
//!   | zero bytes                      | 2.00×            | 2.00× | 6.00×          | 1.33×  |
//!
//!   Base64 costs 4/3 whatever the content, so a chunk's frame size is known in advance
//!   (a 64 KiB chunk makes an 87.4 KiB string); a Latin-1 string (each byte as the
//!   character U+0000–U+00FF) wins by at most 21 % on plain text and loses up to 4.5× on
//!   binary. The `base64` crate's standard engine encodes and decodes.
//! * Data chunks carry at most [`MAX_CHUNK_LEN`] (64 KiB) bytes.
//! * An **environment** is a list of `[name, value]` pairs, in order; the list is the
//!   process's whole environment.
//! * An **exit status** is `{"code":N}` (N in 0..=255) or `{"signal":N}` (N in 1..=64);
//!   the exit code it stands for is N, or 128 + N for a signal
//!   ([`ExitStatus::to_exit_code`]).
//! * An **app name** is an appc AC name: `^[a-z0-9]+(-[a-z0-9]+)*$`.
//! * Strings that become C strings (argv, env, cwd) contain no NUL; `argv` is non-empty
//!   and `argv[0]` not empty; `cwd` is absolute; a window size is at least 1×1; a pid is
//!   at least 1.
//!
//! ### Control connection
//!
//! #### Host → agent ([`control::HostToAgent`])
//!
//! ```json
//! {"type":"start_app","name":"web","process":{"argv":["/usr/bin/nginx","-g","daemon off;"],"env":[["PATH","/usr/sbin:/usr/bin"],["AC_APP_NAME","web"]],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]}}
//! {"type":"stop","app":"web","mode":{"graceful":{"timeout_ms":10000}}}
//! {"type":"stop","app":null,"mode":"force"}
//! {"type":"shutdown"}
//! ```
//!
//! * `start_app` — run `process` chrooted in `/opt/stage2/<name>/rootfs`.
//! * `stop` — stop one app (`app`), or every running app (`null`): `graceful` sends
//!   `SIGTERM` and `SIGKILL` after `timeout_ms`, `force` sends `SIGKILL` at once. The
//!   answer is the `app_exited` of each app stopped, or an `error` naming an app that
//!   does not run.
//! * `shutdown` — the agent kills (`SIGKILL`) what still runs, sends the remaining output
//!   and `app_exited` messages, syncs file systems and powers the VM off.
//!
//! #### Agent → host ([`control::AgentToHost`])
//!
//! ```json
//! {"type":"hello","agent_version":"0.1.0"}
//! {"type":"ready"}
//! {"type":"app_started","name":"web","pid":42}
//! {"type":"app_output","name":"web","stream":"stdout","data":"SGVsbG8gZnJvbSB3ZWIK"}
//! {"type":"app_output","name":"web","stream":"stderr","data":"AP8="}
//! {"type":"app_exited","name":"web","status":{"code":0}}
//! {"type":"app_exited","name":"web","status":{"signal":9}}
//! {"type":"error","app":"web","message":"Unable to open \"/usr/bin/nginx\": No such file or directory"}
//! {"type":"error","app":null,"message":"cannot mount the apps' share: No such device"}
//! ```
//!
//! #### Order
//!
//! 1. Handshake, kind control.
//! 2. Agent: `hello`, at once; later `ready`, once its setup is done.
//! 3. Host: `start_app` for each app, only after `ready`, each name once. The agent answers
//!    each with `app_started`, or with an `error` naming the app if it could not be started
//!    (nothing else then follows for that app: the host counts it as failed).
//! 4. Agent, for each started app: any number of `app_output`, then exactly one
//!    `app_exited`. Every byte the app wrote is sent before its `app_exited`. Messages of
//!    different apps interleave.
//! 5. Host, at any time after `hello`: `stop` (any number) and finally `shutdown`, after
//!    which it sends nothing. The connection ends with the VM.
//!
//! The control connection ending any other way ends the pod with a failure: the host
//! reports it (exit status 254) and the agent powers off.
//!
//! ### Exec session
//!
//! #### Client → agent ([`exec::ClientToAgent`])
//!
//! ```json
//! {"type":"exec","app":"web","process":{"argv":["/bin/sh"],"env":[["PATH","/bin"],["TERM","xterm"]],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]},"tty":true,"window":{"rows":24,"cols":80}}
//! {"type":"exec","app":"web","process":{"argv":["ls","/"],"env":[["PATH","/bin"]],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]},"tty":false,"window":null}
//! {"type":"stdin","data":"bHMK"}
//! {"type":"stdin_eof"}
//! {"type":"resize","rows":50,"cols":132}
//! {"type":"signal","signal":2}
//! ```
//!
//! * `exec` — run `process` in the root of `app` (`null`: the guest's own root, for
//!   debugging the stage1). With `tty`, the process gets a pseudo-terminal as stdin, stdout
//!   and stderr and becomes a session leader; `window` (only with `tty`, may be `null`)
//!   sizes it.
//! * `stdin` / `stdin_eof` — bytes for the process's stdin, then its end (the agent closes
//!   the pipe, or with a tty sends the terminal's EOF character).
//! * `resize` — the client's terminal changed size (ignored without a tty).
//! * `signal` — delivered to the process (with a tty, to its foreground process group).
//!
//! #### Agent → client ([`exec::AgentToClient`])
//!
//! ```json
//! {"type":"started","pid":43}
//! {"type":"stdout","data":"YmluCg=="}
//! {"type":"stderr","data":"c2g6IDE6IGZvbzogbm90IGZvdW5kCg=="}
//! {"type":"exited","status":{"code":127}}
//! {"type":"error","message":"Unable to open \"/foo\": No such file or directory"}
//! ```
//!
//! #### Order
//!
//! 1. Handshake, kind exec.
//! 2. Client: `exec`, first and once.
//! 3. Agent: `started`, or `error` and the end of the session (the agent closes).
//! 4. Then, independently in each direction — client: `stdin` (none after `stdin_eof`),
//!    `stdin_eof` (at most once), `resize`, `signal`; agent: `stdout`, `stderr` (never with a
//!    tty).
//! 5. Agent: `exited`, after every byte of output, as the last message; then it closes.
//!    The client exits with [`ExitStatus::to_exit_code`]. A failure after `started` is
//!    reported as `error` instead, also last.
//!
//! If the client goes away first, the agent ends the process (`SIGHUP` to a tty session,
//! `SIGKILL` otherwise).
//!
//! ## Limits
//!
//! | what                                  | limit                        |
//! |---------------------------------------|------------------------------|
//! | preamble                              | exactly [`PREAMBLE_LEN`] = 8 bytes |
//! | frame body                            | [`MAX_FRAME_LEN`] = 1 MiB    |
//! | data in `app_output`/`stdin`/`stdout`/`stderr` | [`MAX_CHUNK_LEN`] = 64 KiB |
//! | exit code / signal                    | 0..=255 / 1..=64             |
//! | window size                           | 1..=65535 rows and columns   |
//!
//! ## Errors
//!
//! Bad input is never skipped over: a stream cannot be trusted after it. On each side:
//!
//! * a handshake that fails (bad magic, version mismatch, kind not served, truncated
//!   preamble): the acceptor has sent its answer; both sides close;
//! * after the handshake, a frame longer than the limit ([`Error::FrameTooLarge`]), a frame
//!   cut by the end of the stream ([`Error::UnexpectedEof`]), a body that is not a message
//!   of this direction — bad JSON, unknown `type`, unknown, missing or mistyped field, bad
//!   base64 ([`Error::Malformed`]) — or a message breaking a rule above
//!   ([`Error::Invalid`]): the receiver stops reading, logs the error, may send a last
//!   `error` message (agent side) and closes the connection.
//!
//! Every error names what was wrong (the length and the limit, both versions, the field, …).
//!
//! ## Using the crate
//!
//! Blocking streams use [`handshake::connect`] / [`handshake::accept`] and
//! [`read_message`] / [`write_message`]. Event loops use [`handshake::PreambleBuf`] with
//! [`handshake::answer`] or [`handshake::check_reply`], feed received bytes into a
//! [`FrameDecoder`] and take [`FrameDecoder::next_message`] until it returns `None`, and
//! write the bytes of [`encode`].
//!
//! ```
//! use std::os::unix::net::UnixStream;
//!
//! use protocol::control::{AgentToHost, HostToAgent};
//! use protocol::handshake::{self, ConnectionKind};
//! use protocol::{read_message, write_message};
//!
//! let (mut host, mut agent) = UnixStream::pair()?;
//! let agent = std::thread::spawn(move || -> Result<HostToAgent, protocol::Error> {
//!     let kind = handshake::accept(&mut agent, &[ConnectionKind::Control, ConnectionKind::Exec])?;
//!     assert_eq!(kind, ConnectionKind::Control);
//!     write_message(&mut agent, &AgentToHost::Hello { agent_version: "0.1.0".into() })?;
//!     Ok(read_message(&mut agent)?.expect("a message"))
//! });
//!
//! handshake::connect(&mut host, ConnectionKind::Control)?;
//! let hello: Option<AgentToHost> = read_message(&mut host)?;
//! assert_eq!(hello, Some(AgentToHost::Hello { agent_version: "0.1.0".into() }));
//! write_message(&mut host, &HostToAgent::Shutdown {})?;
//! assert_eq!(agent.join().unwrap()?, HostToAgent::Shutdown {});
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod base64;
pub mod control;
pub mod error;
pub mod exec;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod process;

#[cfg(test)]
mod tests;

pub use error::{Error, ValidationError};
pub use frame::{FrameDecoder, MAX_FRAME_LEN};
pub use handshake::{ConnectionKind, PREAMBLE_LEN, PROTOCOL_VERSION};
pub use message::{decode, encode, read_message, write_message, Message, MAX_CHUNK_LEN};
pub use process::{ExitStatus, ProcessSpec, WindowSize};

/// The guest vsock port the agent listens on, for both kinds of connection.
pub const AGENT_VSOCK_PORT: u32 = 1024;
