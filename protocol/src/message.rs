//! Messages in frames: a [`Message`] is validated and serialized to JSON into one frame on
//! the way out, parsed and validated on the way in, so a receiver only ever sees messages
//! that obey the protocol.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::base64;
use crate::error::{Error, ValidationError};
use crate::frame::{self, FrameDecoder, HEADER_LEN, MAX_FRAME_LEN};

/// Largest data chunk (output, stdin) in one message: 64 KiB, one pipe buffer.
pub const MAX_CHUNK_LEN: usize = 64 * 1024;

// A maximal chunk, base64-encoded, uses under an eighth of a frame: the rest of the message
// (type, app name) always fits.
const _: () = assert!(base64::encoded_len(MAX_CHUNK_LEN) <= MAX_FRAME_LEN / 8);

/// Checks a data chunk is at most [`MAX_CHUNK_LEN`] bytes.
pub(crate) fn validate_chunk(data: &[u8]) -> Result<(), ValidationError> {
    if data.len() > MAX_CHUNK_LEN {
        return Err(ValidationError::ChunkTooLarge {
            len: data.len(),
            max: MAX_CHUNK_LEN,
        });
    }
    Ok(())
}

/// A message of one direction of one connection kind.
pub trait Message: Serialize + DeserializeOwned {
    /// Checks the rules that serde cannot express (ranges, NUL bytes, names, …).
    fn validate(&self) -> Result<(), ValidationError>;
}

/// The frame (header and body) carrying `message`, after validating it.
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, Error> {
    message.validate()?;
    let mut frame = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut frame, message).map_err(Error::Encode)?;
    let header = frame::header_for(frame.len() - HEADER_LEN)?;
    frame[..HEADER_LEN].copy_from_slice(&header);
    Ok(frame)
}

/// Parses and validates a frame body.
pub fn decode<M: Message>(body: &[u8]) -> Result<M, Error> {
    let message: M = serde_json::from_slice(body).map_err(Error::Malformed)?;
    message.validate()?;
    Ok(message)
}

/// Writes one message to a blocking stream (see [`encode`]).
pub fn write_message<W: Write + ?Sized, M: Message>(
    writer: &mut W,
    message: &M,
) -> Result<(), Error> {
    frame::write_encoded(writer, &encode(message)?)
}

/// Reads one message from a blocking stream; `Ok(None)` when the stream ends cleanly
/// between frames (see [`frame::read_frame`]).
pub fn read_message<R: Read + ?Sized, M: Message>(reader: &mut R) -> Result<Option<M>, Error> {
    frame::read_frame(reader)?
        .map(|body| decode(&body))
        .transpose()
}

impl FrameDecoder {
    /// The next complete message, `Ok(None)` if more bytes are needed (see
    /// [`next_frame`](Self::next_frame) and [`decode`]).
    pub fn next_message<M: Message>(&mut self) -> Result<Option<M>, Error> {
        self.next_frame()?.map(|body| decode(&body)).transpose()
    }
}
