//! The control connection: one per VM, opened by the process that runs it.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use protocol::control::{AgentToHost, HostToAgent};
use protocol::{handshake, read_message, write_message, ConnectionKind};

use super::HANDSHAKE_TIMEOUT;

/// An open control connection.
#[derive(Debug)]
pub struct Control {
    stream: UnixStream,
    agent_version: String,
}

impl Control {
    /// Does the handshake and waits for the agent's `hello`.
    pub fn open(mut stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(|e| format!("control connection: setting a timeout: {e}"))?;
        handshake::connect(&mut stream, ConnectionKind::Control)
            .map_err(|e| format!("control connection: handshake: {e}"))?;
        let agent_version = match read_message::<_, AgentToHost>(&mut stream) {
            Ok(Some(AgentToHost::Hello { agent_version })) => agent_version,
            Ok(Some(other)) => {
                return Err(format!("control connection: expected hello, got {other:?}"))
            }
            Ok(None) => {
                return Err("control connection: the agent closed it before hello".to_owned())
            }
            Err(e) => return Err(format!("control connection: {e}")),
        };
        stream
            .set_read_timeout(None)
            .map_err(|e| format!("control connection: clearing the timeout: {e}"))?;
        Ok(Self {
            stream,
            agent_version,
        })
    }

    /// The agent's version from its `hello`.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// Waits up to `timeout` for `ready`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| format!("control connection: setting a timeout: {e}"))?;
        let result = match self.next() {
            Ok(Some(AgentToHost::Ready {})) => Ok(()),
            Ok(Some(AgentToHost::Error { message, .. })) => {
                Err(format!("the guest agent failed to set up: {message}"))
            }
            Ok(Some(other)) => Err(format!("control connection: expected ready, got {other:?}")),
            Ok(None) => Err("control connection: the agent closed it before ready".to_owned()),
            Err(e) => Err(e),
        };
        self.stream
            .set_read_timeout(None)
            .map_err(|e| format!("control connection: clearing the timeout: {e}"))?;
        result
    }

    /// A second handle on the same connection (one thread reads, another sends).
    pub fn try_clone(&self) -> Result<Self, String> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| format!("control connection: {e}"))?;
        Ok(Self {
            stream,
            agent_version: self.agent_version.clone(),
        })
    }

    /// Sends one message.
    pub fn send(&mut self, message: &HostToAgent) -> Result<(), String> {
        write_message(&mut self.stream, message).map_err(|e| format!("control connection: {e}"))
    }

    /// The next message from the agent, `None` once it closed the connection.
    pub fn next(&mut self) -> Result<Option<AgentToHost>, String> {
        read_message(&mut self.stream).map_err(|e| format!("control connection: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake agent on the other end of a socket pair.
    fn agent(script: impl FnOnce(&mut UnixStream) + Send + 'static) -> UnixStream {
        let (host, mut agent) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            handshake::accept(&mut agent, &[ConnectionKind::Control]).unwrap();
            script(&mut agent);
        });
        host
    }

    #[test]
    fn handshake_hello_ready_and_shutdown() {
        let host = agent(|s| {
            write_message(
                s,
                &AgentToHost::Hello {
                    agent_version: "9.9".into(),
                },
            )
            .unwrap();
            write_message(s, &AgentToHost::Ready {}).unwrap();
            let got: Option<HostToAgent> = read_message(s).unwrap();
            assert_eq!(got, Some(HostToAgent::Shutdown {}));
        });
        let mut control = Control::open(host).unwrap();
        assert_eq!(control.agent_version(), "9.9");
        control.wait_ready(Duration::from_secs(5)).unwrap();
        control.send(&HostToAgent::Shutdown {}).unwrap();
        assert_eq!(control.next().unwrap(), None);
    }

    #[test]
    fn an_agent_that_reports_an_error_instead_of_ready_fails_setup() {
        let host = agent(|s| {
            write_message(
                s,
                &AgentToHost::Hello {
                    agent_version: "1".into(),
                },
            )
            .unwrap();
            let error = AgentToHost::Error {
                app: None,
                message: "no share".into(),
            };
            write_message(s, &error).unwrap();
        });
        let mut control = Control::open(host).unwrap();
        let err = control.wait_ready(Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("failed to set up: no share"), "{err}");
    }

    #[test]
    fn a_silent_agent_times_out_instead_of_hanging() {
        let host = agent(|s| {
            write_message(
                s,
                &AgentToHost::Hello {
                    agent_version: "1".into(),
                },
            )
            .unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let mut control = Control::open(host).unwrap();
        assert!(control.wait_ready(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_peer_that_is_not_an_agent_is_refused() {
        let (host, mut other) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut buf = [0u8; 8];
            other.read_exact(&mut buf).unwrap();
            other.write_all(b"HTTP/1.0").unwrap();
        });
        let err = Control::open(host).unwrap_err();
        assert!(err.contains("handshake"), "{err}");
    }
}
