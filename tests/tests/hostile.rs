//! Malformed and hostile requests get an error or a closed connection, never a dead broker.

use silt_e2e::Silt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends one raw frame; returns what came back before the broker answered or closed.
fn send_raw(silt: &Silt, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(silt.bootstrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(frame).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn assert_alive(silt: &Silt) {
    let meta = silt_e2e::raw::call(
        &silt.bootstrap(),
        12,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(None),
    );
    assert!(
        meta.is_ok(),
        "broker still serves: {meta:?}\n{}",
        silt.log()
    );
}

#[test]
fn absurd_lengths_and_garbage_do_not_kill_the_broker() {
    let silt = Silt::start();
    let header = |key: i16, version: i16| {
        let mut h = Vec::new();
        h.extend_from_slice(&key.to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&(-1i16).to_be_bytes());
        h
    };
    // Metadata v1 claiming 2^31-1 topics in 14 bytes.
    let mut body = header(3, 1);
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Metadata v12 (compact array) claiming 2^31 topics.
    let mut body = header(3, 12);
    body.push(0); // header tagged fields
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Produce v9 with a partition list of 2^31-1 entries.
    let mut body = header(0, 3);
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b't');
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Frames with negative, tiny and over-limit lengths, an unknown API key, random bytes.
    for frame in [
        (-5i32).to_be_bytes().to_vec(),
        framed(&[1, 2]),
        (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        framed(&header(999, 0)),
        framed(&[0xde; 64]),
    ] {
        send_raw(&silt, &frame);
        assert_alive(&silt);
    }
}
