//! Large tag sets of mixed types packed into the holding-register area, as
//! a PLC programmer would lay out a data block: mostly dense, with a few
//! spare registers between blocks.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The rotation of (type, order, spare registers after it) used to fill the
/// register space. Average width is about 2.1 registers per tag.
const ROTATION: &[(&str, &str, u16)] = &[
    ("u16", "", 0),
    ("i16", "", 0),
    ("u32", "abcd", 0),
    ("i32", "cdab", 0),
    ("f32", "abcd", 0),
    ("f32", "cdab", 0),
    ("f32", "badc", 1),
    ("f64", "dcba", 0),
    ("u64", "abcd", 0),
    ("bit", "", 2),
];

fn width(ty: &str) -> u16 {
    match ty {
        "u32" | "i32" | "f32" => 2,
        "f64" | "u64" | "i64" => 4,
        _ => 1,
    }
}

/// An edge configuration (TOML) for one Modbus TCP device at `server` with
/// `tags` holding-register tags of mixed types, polled every `poll_interval`.
pub fn edge_config(server: SocketAddr, tags: usize, poll_interval: &str, history: &Path) -> String {
    let mut s = String::with_capacity(tags * 110);
    let _ = write!(
        s,
        "schema_version = 1\n[node]\nsite_id = \"bench\"\nnode_id = \"bench-edge\"\n\n\
         [storage]\npath = {:?}\nretention = \"1d\"\nmax_size = \"4GiB\"\nbatch_size = 20000\nflush_interval = \"1s\"\n\n\
         [[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = {:?}\nport = {}\nunit_id = 1\n\
         timeout = \"2s\"\npoll_interval = {:?}\nmax_gap = 4\n",
        history.display().to_string(),
        server.ip().to_string(),
        server.port(),
        poll_interval,
    );
    let mut address: u32 = 0;
    for i in 0..tags {
        let (ty, order, spare) = ROTATION[i % ROTATION.len()];
        if address + u32::from(width(ty)) > 65_535 {
            break;
        }
        let _ = write!(
            s,
            "\n[[tag]]\nname = \"t{i:05}\"\ndevice = \"plc\"\narea = \"holding\"\naddress = {address}\n"
        );
        if ty == "bit" {
            let _ = writeln!(s, "type = \"bit\"\nbit = {}", i % 16);
        } else {
            let _ = writeln!(s, "type = \"{ty}\"");
        }
        if !order.is_empty() {
            let _ = writeln!(s, "order = \"{order}\"");
        }
        address += u32::from(width(ty) + spare);
    }
    s
}
