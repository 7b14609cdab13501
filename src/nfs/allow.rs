//! Who may connect: the machine itself always, other machines only when
//! named. The NFS server checks a connection's address when it is accepted
//! and closes it before reading any RPC when it is not allowed.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Loopback plus the networks given with `--allow-clients`.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

/// A network that is not `ADDR/BITS` or `ADDR`.
#[derive(Debug, thiserror::Error)]
#[error("not a network (ADDR/BITS or ADDR): {0}")]
pub struct BadNet(String);

impl AllowList {
    /// Loopback only.
    pub fn loopback() -> AllowList {
        AllowList::default()
    }

    /// Loopback and `nets` (`10.0.0.0/8`, `192.168.1.20`, `fd00::/8`).
    pub fn parse<S: AsRef<str>>(nets: &[S]) -> Result<AllowList, BadNet> {
        let nets = nets
            .iter()
            .map(|s| {
                let s = s.as_ref().trim();
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| BadNet(s.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowList { nets })
    }

    /// Only loopback?
    pub fn is_loopback_only(&self) -> bool {
        self.nets.is_empty()
    }

    /// May `ip` connect? (An IPv4 address mapped into IPv6 counts as IPv4.)
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || self.nets.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn loopback_is_always_in_and_others_only_when_named() {
        let l = AllowList::loopback();
        assert!(l.allows(ip("127.0.0.1")) && l.allows(ip("::1")));
        assert!(!l.allows(ip("10.1.2.3")));
        let l = AllowList::parse(&["10.0.0.0/8", "192.168.1.20"]).expect("parse");
        assert!(l.allows(ip("10.1.2.3")) && l.allows(ip("192.168.1.20")));
        assert!(!l.allows(ip("192.168.1.21")));
        assert!(l.allows(ip("::ffff:10.0.0.1")));
        assert!(AllowList::parse(&["nonsense"]).is_err());
    }
}
