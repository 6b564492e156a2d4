//! Small builders for the nftables JSON model, so that the ruleset reads like the rules it
//! makes.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::expr::{
    BinaryOperation, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
    Range, SetItem,
};
use nftables::stmt::{Match, Operator, Statement};

use super::model::Protocol;
use super::ports::PortRange;

pub(crate) type Expr = Expression<'static>;
pub(crate) type Stmt = Statement<'static>;

pub(crate) fn string(s: impl Into<String>) -> Expr {
    Expression::String(Cow::Owned(s.into()))
}

pub(crate) fn number(n: u32) -> Expr {
    Expression::Number(n)
}

pub(crate) fn meta(key: MetaKey) -> Expr {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn payload(protocol: &'static str, field: &'static str) -> Expr {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

/// One value as itself, several as an anonymous set.
pub(crate) fn one_or_set(mut items: Vec<Expr>) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        Expression::Named(NamedExpression::Set(
            items.into_iter().map(SetItem::Element).collect(),
        ))
    }
}

/// `left == right` (or `left in right` for flag words like `ct status dnat`).
pub(crate) fn is(left: Expr, right: Expr) -> Stmt {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

pub(crate) fn has(left: Expr, right: Expr) -> Stmt {
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

pub(crate) fn and(left: Expr, right: Expr) -> Expr {
    Expression::BinaryOperation(Box::new(BinaryOperation::AND(left, right)))
}

pub(crate) fn address(addr: IpAddr) -> Expr {
    string(addr.to_string())
}

/// A host prefix as its address, others as `addr/len`.
pub(crate) fn prefix(net: IpNet) -> Expr {
    if net.prefix_len() == net.max_prefix_len() {
        return address(net.addr());
    }
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(address(net.addr())),
        len: u32::from(net.prefix_len()),
    }))
}

pub(crate) fn port_range(p: PortRange) -> Expr {
    if p.first == p.last {
        number(u32::from(p.first))
    } else {
        Expression::Range(Box::new(Range {
            range: [number(u32::from(p.first)), number(u32::from(p.last))],
        }))
    }
}

/// `meta l4proto { ... }`.
pub(crate) fn l4proto(protocols: &[Protocol]) -> Stmt {
    is(
        meta(MetaKey::L4proto),
        one_or_set(
            protocols
                .iter()
                .map(|p| number(u32::from(p.number())))
                .collect(),
        ),
    )
}

/// `th dport { ... }`: the destination port of whichever transport header follows.
pub(crate) fn dport(ports: &[PortRange]) -> Stmt {
    is(
        payload("th", "dport"),
        one_or_set(ports.iter().copied().map(port_range).collect()),
    )
}

/// `ip saddr`/`ip6 saddr` (`field` = "saddr" or "daddr") against prefixes of one family.
pub(crate) fn addresses(field: &'static str, nets: &[IpNet]) -> Stmt {
    let protocol = if nets.first().is_some_and(|n| n.addr().is_ipv4()) {
        "ip"
    } else {
        "ip6"
    };
    is(
        payload(protocol, field),
        one_or_set(nets.iter().copied().map(prefix).collect()),
    )
}

pub(crate) fn iifname(device: &str) -> Stmt {
    is(meta(MetaKey::Iifname), string(device))
}

pub(crate) fn oifname(device: &str) -> Stmt {
    is(meta(MetaKey::Oifname), string(device))
}

/// `meta nfproto ipv4|ipv6`.
pub(crate) fn nfproto(ipv4: bool) -> Stmt {
    is(
        meta(MetaKey::Nfproto),
        string(if ipv4 { "ipv4" } else { "ipv6" }),
    )
}

pub(crate) fn counter() -> Stmt {
    Statement::Counter(nftables::stmt::Counter::Anonymous(Some(
        nftables::stmt::AnonymousCounter::default(),
    )))
}

pub(crate) fn accept() -> Stmt {
    Statement::Accept(None)
}

pub(crate) fn drop() -> Stmt {
    Statement::Drop(None)
}

pub(crate) fn jump(chain: &str) -> Stmt {
    Statement::Jump(nftables::stmt::JumpTarget {
        target: Cow::Owned(chain.to_owned()),
    })
}
