//! Tests across modules: every message through every path of the wire, the specification's
//! examples, and bad input of every kind.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io::Cursor;

use serde_json::error::Category;

use crate::control::{AgentToHost, HostToAgent, OutputStream, StopMode};
use crate::exec::{AgentToClient, ClientToAgent, ExecRequest};
use crate::frame::{FrameDecoder, HEADER_LEN, MAX_FRAME_LEN};
use crate::message::{decode, encode, read_message, write_message, Message, MAX_CHUNK_LEN};
use crate::process::{ExitStatus, ProcessSpec, WindowSize};
use crate::{Error, ValidationError};

/// Every byte value once.
fn all_bytes() -> Vec<u8> {
    (0..=255).collect()
}

fn spec() -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/usr/bin/nginx".into(), "-g".into(), "daemon off;".into()],
        env: vec![
            ("PATH".into(), "/usr/bin".into()),
            ("EMPTY".into(), String::new()),
        ],
        cwd: "/srv".into(),
        uid: 1000,
        gid: 100,
        supplementary_gids: vec![10, 20],
    }
}

fn host_messages() -> Vec<HostToAgent> {
    vec![
        HostToAgent::StartApp {
            name: "web".into(),
            process: spec(),
        },
        HostToAgent::Stop {
            app: Some("web".into()),
            mode: StopMode::Graceful { timeout_ms: 10_000 },
        },
        HostToAgent::Stop {
            app: None,
            mode: StopMode::Force,
        },
        HostToAgent::Shutdown {},
    ]
}

fn agent_messages() -> Vec<AgentToHost> {
    vec![
        AgentToHost::Hello {
            agent_version: "0.1.0".into(),
        },
        AgentToHost::Ready {},
        AgentToHost::AppStarted {
            name: "web".into(),
            pid: 1,
        },
        AgentToHost::AppOutput {
            name: "web".into(),
            stream: OutputStream::Stdout,
            data: all_bytes(),
        },
        AgentToHost::AppOutput {
            name: "web".into(),
            stream: OutputStream::Stderr,
            data: vec![],
        },
        AgentToHost::AppOutput {
            name: "db-2".into(),
            stream: OutputStream::Stdout,
            data: vec![0x5a; MAX_CHUNK_LEN],
        },
        AgentToHost::AppExited {
            name: "web".into(),
            status: ExitStatus::Code(0),
        },
        AgentToHost::AppExited {
            name: "web".into(),
            status: ExitStatus::Code(255),
        },
        AgentToHost::AppExited {
            name: "web".into(),
            status: ExitStatus::Signal(9),
        },
        AgentToHost::Error {
            app: Some("web".into()),
            message: "Unable to open \"/x\": ☹\n".into(),
        },
        AgentToHost::Error {
            app: None,
            message: String::new(),
        },
    ]
}

fn client_messages() -> Vec<ClientToAgent> {
    vec![
        ClientToAgent::Exec(ExecRequest {
            app: Some("web".into()),
            process: spec(),
            tty: true,
            window: Some(WindowSize { rows: 24, cols: 80 }),
        }),
        ClientToAgent::Exec(ExecRequest {
            app: None,
            process: spec(),
            tty: false,
            window: None,
        }),
        ClientToAgent::Stdin { data: all_bytes() },
        ClientToAgent::StdinEof {},
        ClientToAgent::Resize(WindowSize {
            rows: 50,
            cols: 132,
        }),
        ClientToAgent::Signal { signal: 2 },
    ]
}

fn exec_agent_messages() -> Vec<AgentToClient> {
    vec![
        AgentToClient::Started { pid: 43 },
        AgentToClient::Stdout { data: all_bytes() },
        AgentToClient::Stderr {
            data: all_bytes().into_iter().rev().collect(),
        },
        AgentToClient::Exited {
            status: ExitStatus::Code(127),
        },
        AgentToClient::Exited {
            status: ExitStatus::Signal(15),
        },
        AgentToClient::Error {
            message: "Unable to open \"/foo\": No such file or directory".into(),
        },
    ]
}

/// A small deterministic generator for chunk sizes.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(bound).unwrap()).unwrap()
    }
}

/// Sends `messages` through every way of reading and checks they come out equal.
fn round_trip_all<M: Message + PartialEq + Debug>(messages: &[M]) {
    let mut wire = Vec::new();
    for message in messages {
        write_message(&mut wire, message).unwrap();
    }
    let frames: Vec<u8> = messages.iter().flat_map(|m| encode(m).unwrap()).collect();
    assert_eq!(
        wire, frames,
        "write_message writes exactly what encode returns"
    );

    // Blocking reads.
    let mut reader = Cursor::new(&wire);
    for message in messages {
        assert_eq!(
            &read_message::<_, M>(&mut reader).unwrap().unwrap(),
            message
        );
    }
    assert!(read_message::<_, M>(&mut reader).unwrap().is_none());

    // The incremental decoder, one byte at a time.
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    for byte in &wire {
        decoder.feed(std::slice::from_ref(byte));
        while let Some(message) = decoder.next_message::<M>().unwrap() {
            out.push(message);
        }
    }
    decoder.finish().unwrap();
    assert_eq!(out, messages);

    // The incremental decoder, in random-sized chunks (several seeds).
    for seed in 1..=20_u64 {
        let mut sizes = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut decoder = FrameDecoder::new();
        let mut out = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((1 + sizes.below(3 * 4096)).min(rest.len()));
            rest = tail;
            decoder.feed(chunk);
            while let Some(message) = decoder.next_message::<M>().unwrap() {
                out.push(message);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(out, messages, "seed {seed}");
    }

    // All at once.
    let mut decoder = FrameDecoder::new();
    decoder.feed(&wire);
    for message in messages {
        assert_eq!(&decoder.next_message::<M>().unwrap().unwrap(), message);
    }
    assert!(decoder.next_message::<M>().unwrap().is_none());
    assert_eq!(decoder.buffered_len(), 0);
}

#[test]
fn every_control_message_round_trips() {
    round_trip_all(&host_messages());
    round_trip_all(&agent_messages());
}

#[test]
fn every_exec_message_round_trips() {
    round_trip_all(&client_messages());
    round_trip_all(&exec_agent_messages());
}

#[test]
fn every_byte_value_survives_in_every_data_message() {
    let data = all_bytes();
    let body = |frame: Vec<u8>| frame[HEADER_LEN..].to_vec();

    let msg = AgentToHost::AppOutput {
        name: "a".into(),
        stream: OutputStream::Stderr,
        data: data.clone(),
    };
    let back: AgentToHost = decode(&body(encode(&msg).unwrap())).unwrap();
    assert!(matches!(back, AgentToHost::AppOutput { data: d, .. } if d == data));

    let back: ClientToAgent = decode(&body(
        encode(&ClientToAgent::Stdin { data: data.clone() }).unwrap(),
    ))
    .unwrap();
    assert_eq!(back, ClientToAgent::Stdin { data: data.clone() });

    for msg in [
        AgentToClient::Stdout { data: data.clone() },
        AgentToClient::Stderr { data: data.clone() },
    ] {
        let back: AgentToClient = decode(&body(encode(&msg).unwrap())).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn data_costs_exactly_four_thirds_on_the_wire() {
    let msg = |n: usize| ClientToAgent::Stdin { data: vec![0; n] };
    let empty = encode(&msg(0)).unwrap().len();
    assert_eq!(empty, HEADER_LEN + r#"{"type":"stdin","data":""}"#.len());
    for n in [1, 2, 3, 1000, MAX_CHUNK_LEN] {
        assert_eq!(
            encode(&msg(n)).unwrap().len() - empty,
            n.div_ceil(3) * 4,
            "{n} bytes"
        );
    }
}

#[test]
fn exit_status_on_the_wire_and_as_exit_code() {
    let cases = [
        (ExitStatus::Code(0), r#"{"code":0}"#, 0),
        (ExitStatus::Code(1), r#"{"code":1}"#, 1),
        (ExitStatus::Code(255), r#"{"code":255}"#, 255),
        (ExitStatus::Signal(9), r#"{"signal":9}"#, 137),
        (ExitStatus::Signal(15), r#"{"signal":15}"#, 143),
    ];
    for (status, json, exit_code) in cases {
        assert_eq!(serde_json::to_string(&status).unwrap(), json);
        let body = format!(r#"{{"type":"exited","status":{json}}}"#);
        let back: AgentToClient = decode(body.as_bytes()).unwrap();
        assert_eq!(back, AgentToClient::Exited { status });
        let AgentToClient::Exited { status: back } = back else {
            unreachable!()
        };
        assert_eq!(back.to_exit_code(), exit_code);
    }
}

/// The JSON examples of the specification (the crate documentation), by direction.
fn spec_examples() -> Vec<(String, String)> {
    let doc = include_str!("lib.rs");
    let mut direction = String::new();
    let mut in_json = false;
    let mut examples = Vec::new();
    for line in doc.lines().map_while(|l| l.strip_prefix("//!")) {
        let line = line.trim_start();
        if let Some(heading) = line.strip_prefix("#### ") {
            direction = heading.split(" (").next().unwrap().to_owned();
        } else if line == "```json" {
            in_json = true;
        } else if line == "```" {
            in_json = false;
        } else if in_json {
            examples.push((direction.clone(), line.to_owned()));
        }
    }
    examples
}

/// Decodes `json` as an `M`, re-encodes it and returns its `type`.
fn check_example<M: Message>(json: &str) -> String {
    let message: M = decode(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(
        serde_json::to_string(&message).unwrap(),
        json,
        "the example is exactly what we send"
    );
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["type"].as_str().unwrap().to_owned()
}

#[test]
fn the_specification_examples_are_exact_and_cover_every_message() {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (direction, json) in spec_examples() {
        let kind = match direction.as_str() {
            "Host → agent" => check_example::<HostToAgent>(&json),
            "Agent → host" => check_example::<AgentToHost>(&json),
            "Client → agent" => check_example::<ClientToAgent>(&json),
            "Agent → client" => check_example::<AgentToClient>(&json),
            other => panic!("JSON example under an unknown heading {other:?}: {json}"),
        };
        seen.insert((direction, kind));
    }
    let expected = [
        ("Host → agent", &["start_app", "stop", "shutdown"][..]),
        (
            "Agent → host",
            &[
                "hello",
                "ready",
                "app_started",
                "app_output",
                "app_exited",
                "error",
            ],
        ),
        (
            "Client → agent",
            &["exec", "stdin", "stdin_eof", "resize", "signal"],
        ),
        (
            "Agent → client",
            &["started", "stdout", "stderr", "exited", "error"],
        ),
    ];
    let expected: BTreeSet<(String, String)> = expected
        .iter()
        .flat_map(|(dir, kinds)| kinds.iter().map(|k| ((*dir).to_owned(), (*k).to_owned())))
        .collect();
    assert_eq!(seen, expected);

    // And the lists of messages the other tests use hold every kind of message.
    let kinds_of = |dir: &str| -> BTreeSet<String> {
        expected
            .iter()
            .filter(|(d, _)| d == dir)
            .map(|(_, k)| k.clone())
            .collect()
    };
    assert_eq!(types_of(&host_messages()), kinds_of("Host → agent"));
    assert_eq!(types_of(&agent_messages()), kinds_of("Agent → host"));
    assert_eq!(types_of(&client_messages()), kinds_of("Client → agent"));
    assert_eq!(types_of(&exec_agent_messages()), kinds_of("Agent → client"));
}

/// The `type` of each message.
fn types_of<M: serde::Serialize>(messages: &[M]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::to_value(m).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Decodes a body as `M`, expecting [`Error::Malformed`] of `category` whose message
/// contains `needle`.
fn assert_malformed<M: Message + Debug>(body: &str, category: Category, needle: &str) {
    match decode::<M>(body.as_bytes()) {
        Err(Error::Malformed(e)) => {
            assert_eq!(e.classify(), category, "{body}: {e}");
            assert!(
                e.to_string().contains(needle),
                "{body}: {e:?} lacks {needle:?}"
            );
        }
        other => panic!("{body}: expected Malformed, got {other:?}"),
    }
}

#[test]
fn garbage_and_truncated_json_are_malformed() {
    assert_malformed::<HostToAgent>("not json", Category::Syntax, "expected");
    assert_malformed::<HostToAgent>("", Category::Eof, "EOF");
    assert_malformed::<HostToAgent>(r#"{"type":"shutdown""#, Category::Eof, "EOF");
    assert_malformed::<HostToAgent>(r#"{"type":"shutdown"} {}"#, Category::Syntax, "trailing");
    assert_malformed::<HostToAgent>("\u{0}\u{1}\u{2}", Category::Syntax, "expected");
    assert_malformed::<HostToAgent>("[1,2,3]", Category::Data, "");
    assert!(matches!(
        decode::<HostToAgent>(b"\xff\xfe{}"),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn unknown_types_and_fields_are_malformed() {
    assert_malformed::<HostToAgent>(
        r#"{"type":"reboot"}"#,
        Category::Data,
        "unknown variant `reboot`",
    );
    assert_malformed::<HostToAgent>(
        r#"{"kind":"shutdown"}"#,
        Category::Data,
        "missing field `type`",
    );
    assert_malformed::<HostToAgent>(
        r#"{"type":"shutdown","now":true}"#,
        Category::Data,
        "unknown field `now`",
    );
    assert_malformed::<AgentToHost>(
        r#"{"type":"ready","extra":1}"#,
        Category::Data,
        "unknown field `extra`",
    );
    assert_malformed::<HostToAgent>(
        r#"{"type":"stop","app":null,"mode":"force","signal":9}"#,
        Category::Data,
        "unknown field `signal`",
    );
    assert_malformed::<HostToAgent>(
        r#"{"type":"stop","app":null,"mode":{"graceful":{"timeout_ms":1,"x":2}}}"#,
        Category::Data,
        "unknown field `x`",
    );
    assert_malformed::<HostToAgent>(
        r#"{"type":"start_app","name":"web","process":{"argv":["/x"],"env":[],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[],"rlimits":[]}}"#,
        Category::Data,
        "unknown field `rlimits`",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"resize","rows":1,"cols":1,"x":0}"#,
        Category::Data,
        "unknown field `x`",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"exec","app":null,"process":{"argv":["/x"],"env":[],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]},"tty":false,"window":null,"user":"root"}"#,
        Category::Data,
        "unknown field `user`",
    );
    // A message of the other direction is unknown here.
    assert_malformed::<HostToAgent>(
        r#"{"type":"ready"}"#,
        Category::Data,
        "unknown variant `ready`",
    );
    assert_malformed::<AgentToClient>(
        r#"{"type":"stdin","data":""}"#,
        Category::Data,
        "unknown variant `stdin`",
    );
}

#[test]
fn missing_and_mistyped_fields_are_malformed() {
    assert_malformed::<AgentToHost>(
        r#"{"type":"app_started","name":"web"}"#,
        Category::Data,
        "missing field `pid`",
    );
    assert_malformed::<AgentToHost>(
        r#"{"type":"app_started","name":"web","pid":-1}"#,
        Category::Data,
        "invalid value",
    );
    assert_malformed::<AgentToHost>(
        r#"{"type":"app_started","name":"web","pid":4294967296}"#,
        Category::Data,
        "invalid value",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"resize","rows":"24","cols":80}"#,
        Category::Data,
        "invalid type",
    );
    assert_malformed::<AgentToClient>(
        r#"{"type":"exited","status":{"code":0,"signal":9}}"#,
        Category::Data,
        "",
    );
    assert_malformed::<AgentToClient>(r#"{"type":"exited","status":"code"}"#, Category::Data, "");
    assert_malformed::<AgentToHost>(
        r#"{"type":"app_output","name":"web","stream":"stdin","data":""}"#,
        Category::Data,
        "unknown variant `stdin`",
    );
}

#[test]
fn bad_base64_is_malformed() {
    assert_malformed::<ClientToAgent>(
        r#"{"type":"stdin","data":"aGVsbG8"}"#,
        Category::Data,
        "invalid base64: Invalid padding",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"stdin","data":"aGVs\nbG8K"}"#,
        Category::Data,
        "invalid base64",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"stdin","data":"aGVs_G8K"}"#,
        Category::Data,
        "Invalid symbol 95, offset 4",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"stdin","data":"aGVsbG9="}"#,
        Category::Data,
        "Invalid last symbol 57, offset 6",
    );
    assert_malformed::<ClientToAgent>(
        r#"{"type":"stdin","data":[104,105]}"#,
        Category::Data,
        "a base64 string",
    );
    // Escaped JSON is still just a string: "aGk=" written with escapes decodes.
    let back: ClientToAgent = decode(br#"{"type":"stdin","data":"\u0061Gk\u003d"}"#).unwrap();
    assert_eq!(
        back,
        ClientToAgent::Stdin {
            data: b"hi".to_vec()
        }
    );
}

/// Decodes `body`, expecting [`Error::Invalid`] with exactly `expected`.
fn assert_invalid<M: Message + Debug>(body: &str, expected: ValidationError) {
    let shown = &body[..body.len().min(200)];
    match decode::<M>(body.as_bytes()) {
        Err(Error::Invalid(e)) => assert_eq!(e, expected, "{shown}"),
        other => panic!("{shown}: expected Invalid({expected:?}), got {other:?}"),
    }
}

#[test]
fn messages_breaking_rules_are_invalid_on_receipt() {
    let start = |argv: &str| {
        format!(
            r#"{{"type":"start_app","name":"web","process":{{"argv":{argv},"env":[],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]}}}}"#
        )
    };
    assert_invalid::<HostToAgent>(&start("[]"), ValidationError::EmptyArgv);
    assert_invalid::<HostToAgent>(
        &start(r#"["/bin/sh","-c","a\u0000b"]"#),
        ValidationError::NulByte {
            field: "process.argv[2]".into(),
        },
    );
    assert_invalid::<HostToAgent>(&start(r#"[""]"#), ValidationError::EmptyProgram);
    assert_invalid::<HostToAgent>(
        r#"{"type":"start_app","name":"../etc","process":{"argv":["/x"],"env":[],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]}}"#,
        ValidationError::InvalidAppName {
            name: "../etc".into(),
        },
    );
    assert_invalid::<HostToAgent>(
        r#"{"type":"start_app","name":"web","process":{"argv":["/x"],"env":[["A=B","c"]],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]}}"#,
        ValidationError::InvalidEnvName { name: "A=B".into() },
    );
    assert_invalid::<HostToAgent>(
        r#"{"type":"stop","app":"Web","mode":"force"}"#,
        ValidationError::InvalidAppName { name: "Web".into() },
    );
    assert_invalid::<AgentToHost>(
        r#"{"type":"app_started","name":"web","pid":0}"#,
        ValidationError::ZeroPid,
    );
    assert_invalid::<AgentToHost>(
        r#"{"type":"app_exited","name":"web","status":{"code":256}}"#,
        ValidationError::ExitCodeOutOfRange { code: 256 },
    );
    assert_invalid::<AgentToClient>(
        r#"{"type":"exited","status":{"signal":0}}"#,
        ValidationError::SignalOutOfRange { signal: 0 },
    );
    assert_invalid::<AgentToClient>(r#"{"type":"started","pid":0}"#, ValidationError::ZeroPid);
    assert_invalid::<ClientToAgent>(
        r#"{"type":"signal","signal":65}"#,
        ValidationError::SignalOutOfRange { signal: 65 },
    );
    assert_invalid::<ClientToAgent>(
        r#"{"type":"resize","rows":0,"cols":80}"#,
        ValidationError::InvalidWindowSize { rows: 0, cols: 80 },
    );
    assert_invalid::<ClientToAgent>(
        r#"{"type":"exec","app":"web","process":{"argv":["/bin/sh"],"env":[],"cwd":"/","uid":0,"gid":0,"supplementary_gids":[]},"tty":false,"window":{"rows":24,"cols":80}}"#,
        ValidationError::WindowWithoutTty,
    );
    assert_invalid::<ClientToAgent>(
        r#"{"type":"exec","app":"web","process":{"argv":["/bin/sh"],"env":[],"cwd":"relative","uid":0,"gid":0,"supplementary_gids":[]},"tty":false,"window":null}"#,
        ValidationError::RelativeCwd {
            cwd: "relative".into(),
        },
    );

    let oversized = format!(
        r#"{{"type":"stdin","data":"{}"}}"#,
        crate::base64::encode(&vec![7; MAX_CHUNK_LEN + 1])
    );
    assert_invalid::<ClientToAgent>(
        &oversized,
        ValidationError::ChunkTooLarge {
            len: MAX_CHUNK_LEN + 1,
            max: MAX_CHUNK_LEN,
        },
    );
}

#[test]
fn invalid_messages_are_not_sent() {
    let mut wire = Vec::new();
    let bad = HostToAgent::StartApp {
        name: "web".into(),
        process: ProcessSpec {
            argv: vec![],
            ..spec()
        },
    };
    let err = write_message(&mut wire, &bad).unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ValidationError::EmptyArgv)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "invalid message: argv is empty");

    let nul = ClientToAgent::Exec(ExecRequest {
        app: None,
        process: ProcessSpec {
            argv: vec!["/bin/sh\0".into()],
            ..spec()
        },
        tty: false,
        window: None,
    });
    assert!(matches!(
        encode(&nul),
        Err(Error::Invalid(ValidationError::NulByte { field })) if field == "process.argv[0]"
    ));

    let big = AgentToClient::Stdout {
        data: vec![0; MAX_CHUNK_LEN + 1],
    };
    assert!(matches!(
        write_message(&mut wire, &big),
        Err(Error::Invalid(ValidationError::ChunkTooLarge { len, max: MAX_CHUNK_LEN })) if len == MAX_CHUNK_LEN + 1
    ));
    assert!(wire.is_empty(), "nothing was written");
}

#[test]
fn a_message_larger_than_a_frame_is_refused_when_encoding() {
    let huge = AgentToClient::Error {
        message: "x".repeat(MAX_FRAME_LEN),
    };
    let err = encode(&huge).unwrap_err();
    let body_len = MAX_FRAME_LEN + r#"{"type":"error","message":""}"#.len();
    assert!(
        matches!(err, Error::FrameTooLarge { len, max: MAX_FRAME_LEN } if len == body_len),
        "{err:?}"
    );
}

#[test]
fn frame_level_errors_surface_through_message_reads() {
    // Oversized header.
    let mut reader = Cursor::new(u32::MAX.to_be_bytes().to_vec());
    assert!(matches!(
        read_message::<_, HostToAgent>(&mut reader),
        Err(Error::FrameTooLarge {
            max: MAX_FRAME_LEN,
            ..
        })
    ));

    // A frame cut short.
    let mut frame = encode(&HostToAgent::Shutdown {}).unwrap();
    frame.truncate(frame.len() - 1);
    let got = frame.len() - HEADER_LEN;
    let err = read_message::<_, HostToAgent>(&mut Cursor::new(&frame)).unwrap_err();
    assert!(
        matches!(err, Error::UnexpectedEof { what: "a frame body", got: g, expected } if g == got && expected == got + 1),
        "{err:?}"
    );
    let mut decoder = FrameDecoder::new();
    decoder.feed(&frame);
    assert!(decoder.next_message::<HostToAgent>().unwrap().is_none());
    assert!(matches!(
        decoder.finish(),
        Err(Error::UnexpectedEof {
            what: "a frame body",
            ..
        })
    ));

    // Garbage in a well-formed frame, after a good message: the good one is delivered.
    let mut decoder = FrameDecoder::new();
    decoder.feed(&encode(&HostToAgent::Shutdown {}).unwrap());
    decoder.feed(&crate::frame::encode_frame(b"{garbage").unwrap());
    assert_eq!(
        decoder.next_message::<HostToAgent>().unwrap(),
        Some(HostToAgent::Shutdown {})
    );
    assert!(matches!(
        decoder.next_message::<HostToAgent>(),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn optional_fields_may_be_omitted_by_a_sender() {
    let back: HostToAgent = decode(br#"{"type":"stop","mode":"force"}"#).unwrap();
    assert_eq!(
        back,
        HostToAgent::Stop {
            app: None,
            mode: StopMode::Force
        }
    );
    let back: AgentToHost = decode(br#"{"message":"m","type":"error"}"#).unwrap();
    assert_eq!(
        back,
        AgentToHost::Error {
            app: None,
            message: "m".into()
        }
    );
}
