//! A small stub resolver for join targets, sans-IO: the parts of musl's and Go's that a router
//! needs (/etc/hosts, then A and AAAA over UDP to the nameservers of /etc/resolv.conf, with its
//! search list, ndots, timeout and attempts), driven by `resolver` from the agent's event loop.

pub mod conf;
pub mod lookup;
pub mod message;
