use std::io::Cursor;

use anyhow::bail;
use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_stat, call_body, fragment_header, msg_body, opaque_auth,
    rejected_reply, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Pack, Unpack, Void};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest RPC message taken from a client: a 1 MiB WRITE and its
/// headers, with room to spare. A larger one closes the connection.
const MAX_MESSAGE: usize = 4 << 20;

/// Read one RPC message (all its record-marking fragments, without their
/// headers) from `input`; `None` at a clean end of stream between messages.
/// The bytes go from the socket into the message's own buffer, never zeroed
/// first. (MarkBase patch: replaces `PackedRpcMessage`.)
pub async fn read_message(
    input: &mut (impl AsyncRead + Unpin),
) -> anyhow::Result<Option<CompleteRpcMessage>> {
    let mut data: Vec<u8> = Vec::new();
    loop {
        let mut header_buf = [0_u8; 4];
        match input.read_exact(&mut header_buf).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && data.is_empty() => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        let header: fragment_header = header_buf.into();
        let end = data.len() + header.fragment_length() as usize;
        if end > MAX_MESSAGE {
            bail!("RPC message of more than {MAX_MESSAGE} bytes");
        }
        data.reserve_exact(end - data.len());
        while data.len() < end {
            let want = (end - data.len()) as u64;
            if (&mut *input).take(want).read_buf(&mut data).await? == 0 {
                bail!("connection closed inside an RPC message");
            }
        }
        if header.eof() {
            return Ok(Some(CompleteRpcMessage(data, Vec::new())));
        }
    }
}

/// A whole RPC message. A reply may carry `data` to go on the wire after
/// the packed part, padded to 4 bytes: the contents of the opaque whose
/// length ends the packed part (READ's data, never copied into the reply).
#[derive(Debug)]
pub struct CompleteRpcMessage(Vec<u8>, Vec<u8>);

impl CompleteRpcMessage {
    /// The packed part, and the data sent after it.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.0, self.1)
    }
}

pub struct IncomingRpcMessage {
    xid: u32,
    body: call_body<'static>,
    data: Option<Vec<u8>>,
    message_start: usize, // offset of the start of the message in the data buffer
}

impl TryFrom<CompleteRpcMessage> for IncomingRpcMessage {
    type Error = anyhow::Error;

    fn try_from(packed: CompleteRpcMessage) -> Result<Self, Self::Error> {
        let packed = packed.0;
        let (rpc, pos) = match rpc_msg::unpack(&mut Cursor::new(&packed)) {
            Ok(ok) => ok,
            Err(err) => {
                bail!("Failed to unpack RPC message: {err}");
            }
        };

        let xid = rpc.xid;
        let body = match rpc.body {
            msg_body::CALL(call) => call,
            msg_body::REPLY(_) => {
                bail!("Expected a CALL message, got REPLY. XID: {xid}");
            }
        };

        Ok(Self {
            xid,
            body,
            data: Some(packed),
            message_start: pos,
        })
    }
}

impl IncomingRpcMessage {
    pub const fn xid(&self) -> u32 {
        self.xid
    }
    pub const fn body(&self) -> &call_body<'static> {
        &self.body
    }

    pub const fn take_data(&mut self) -> Cursor<Vec<u8>> {
        let data = self.data.take().expect("Data already taken");
        let mut cursor = Cursor::new(data);
        cursor.set_position(self.message_start as u64);
        cursor
    }

    pub fn into_success_reply<T>(self, message: &T) -> anyhow::Result<HandleResult>
    where
        T: Pack + 'static,
    {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
                verf: opaque_auth::default(),
                reply_data: accept_stat_data::SUCCESS,
            })),
        };

        pack(&rpc, message).map(HandleResult::Reply)
    }

    /// As [`Self::into_success_reply`], with `data` sent after `message`
    /// as the contents of the (empty) opaque that ends it.
    pub fn into_success_reply_with_data<T>(
        self,
        message: &T,
        data: Vec<u8>,
    ) -> anyhow::Result<HandleResult>
    where
        T: Pack + 'static,
    {
        let HandleResult::Reply(CompleteRpcMessage(mut head, _)) =
            self.into_success_reply(message)?
        else {
            bail!("no reply");
        };
        if !data.is_empty() {
            let len = u32::try_from(data.len())?;
            let at = head.len().checked_sub(4).ok_or_else(|| anyhow::anyhow!("short reply"))?;
            if head[at..] != [0, 0, 0, 0] {
                bail!("the reply does not end with an empty opaque");
            }
            head[at..].copy_from_slice(&len.to_be_bytes());
        }
        Ok(HandleResult::Reply(CompleteRpcMessage(head, data)))
    }

    pub fn into_rpc_mismatch(self) -> anyhow::Result<HandleResult> {
        use nfs3_types::rpc::RPC_VERSION_2;

        let reply =
            reply_body::MSG_DENIED(rejected_reply::rpc_mismatch(RPC_VERSION_2, RPC_VERSION_2));

        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }

    pub fn into_auth_error(self, stat: auth_stat) -> anyhow::Result<HandleResult> {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::auth_error(stat))),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }

    pub fn into_error_reply(self, err: accept_stat_data) -> anyhow::Result<HandleResult> {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
                verf: opaque_auth::default(),
                reply_data: err,
            })),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }
}

pub enum HandleResult {
    Reply(CompleteRpcMessage),
    NoReply,
}

fn pack<T>(rpc: &rpc_msg, message: &T) -> anyhow::Result<CompleteRpcMessage>
where
    T: Pack + 'static,
{
    let size = rpc
        .packed_size()
        .checked_add(message.packed_size())
        .expect("Failed to calculate size");

    let mut cursor = Cursor::new(Vec::with_capacity(size));
    rpc.pack(&mut cursor)?;
    message.pack(&mut cursor)?;
    Ok(CompleteRpcMessage(cursor.into_inner(), Vec::new()))
}
