//! `[[dhcp.option]]`: extra DHCP options, each a code the server does not manage and exactly
//! one value (`ip`, `text`, `hex`, `u8`, `u16`, `u32` or `bool`), each code at most once.

use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Spanned;

use super::{q, ConfigError, Cx};
use crate::service::dhcp::params::MANAGED_OPTIONS;
use crate::service::dhcp::ExtraOption;

/// One `[[dhcp.option]]`: a code and exactly one value key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[dhcp.option]] table")]
pub(super) struct RawOption {
    code: Spanned<i64>,
    ip: Option<Vec<Spanned<String>>>,
    text: Option<String>,
    hex: Option<Spanned<String>>,
    u8: Option<Spanned<i64>>,
    u16: Option<Spanned<i64>>,
    u32: Option<Spanned<i64>>,
    bool: Option<bool>,
    always: Option<bool>,
}

/// Every `[[dhcp.option]]`, each code at most once.
pub(super) fn extra_options(
    cx: &Cx<'_>,
    option: &Option<Vec<Spanned<RawOption>>>,
) -> Result<Vec<ExtraOption>, ConfigError> {
    let mut options: Vec<ExtraOption> = Vec::new();
    for o in option.iter().flatten() {
        let x = extra_option(cx, o)?;
        if options.iter().any(|y| y.code == x.code) {
            return Err(cx.error(
                o.span(),
                format!(
                    "[[dhcp.option]] code {} is configured twice (keep one)",
                    x.code
                ),
            ));
        }
        options.push(x);
    }
    Ok(options)
}

/// One `[[dhcp.option]]`: `code` 1..=254 and not managed by the server, and exactly one of
/// `ip` (a list of IPv4 addresses), `text`, `hex` (colon-separated bytes), `u8`, `u16`, `u32`
/// or `bool`. An empty `ip`, `text` or `hex` means: do not send this option.
fn extra_option(cx: &Cx<'_>, raw: &Spanned<RawOption>) -> Result<ExtraOption, ConfigError> {
    let o = raw.get_ref();
    let code = *o.code.get_ref();
    let e = format!("[[dhcp.option]] code {code}");
    let code = u8::try_from(code)
        .ok()
        .filter(|c| !MANAGED_OPTIONS.contains(c))
        .ok_or_else(|| {
            cx.error(
                o.code.span(),
                format!(
                    "{e} cannot be configured (use 1 to 254; 50-55, 57-59, 61 and 82 are \
                     managed by the server)"
                ),
            )
        })?;
    let int = |v: &Spanned<i64>, max: i64, bytes: usize| -> Result<Vec<u8>, ConfigError> {
        let n = *v.get_ref();
        if !(0..=max).contains(&n) {
            return Err(cx.error(v.span(), format!("{e}: {n} is out of range (0 to {max})")));
        }
        Ok(n.to_be_bytes()[8 - bytes..].to_vec())
    };
    let mut values: Vec<Vec<u8>> = Vec::new();
    if let Some(list) = &o.ip {
        values.push(option_ips(cx, &e, list)?);
    }
    if let Some(t) = &o.text {
        values.push(t.as_bytes().to_vec());
    }
    if let Some(h) = &o.hex {
        values.push(option_hex(cx, &e, h)?);
    }
    if let Some(v) = &o.u8 {
        values.push(int(v, 0xff, 1)?);
    }
    if let Some(v) = &o.u16 {
        values.push(int(v, 0xffff, 2)?);
    }
    if let Some(v) = &o.u32 {
        values.push(int(v, 0xffff_ffff, 4)?);
    }
    if let Some(b) = o.bool {
        values.push(vec![u8::from(b)]);
    }
    let data = match <[Vec<u8>; 1]>::try_from(values) {
        Ok([data]) => data,
        Err(_) => {
            return Err(cx.error(
                raw.span(),
                format!("{e} needs exactly one value: ip = [...], text, hex, u8, u16, u32 or bool"),
            ))
        }
    };
    if data.len() > 255 {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e} is {} bytes long; an option holds at most 255",
                data.len()
            ),
        ));
    }
    Ok(ExtraOption {
        code,
        data,
        always: o.always.unwrap_or(false),
    })
}

/// An option's `ip = [...]`: the addresses' octets, in order.
fn option_ips(cx: &Cx<'_>, e: &str, list: &[Spanned<String>]) -> Result<Vec<u8>, ConfigError> {
    let mut data = Vec::with_capacity(list.len() * 4);
    for s in list {
        let ip: Ipv4Addr = s.get_ref().parse().map_err(|_| {
            cx.error(
                s.span(),
                format!(
                    "{e}: ip {} is not an IPv4 address (write it like \"10.13.31.1\")",
                    q(s.get_ref())
                ),
            )
        })?;
        data.extend_from_slice(&ip.octets());
    }
    Ok(data)
}

/// An option's `hex`: colon-separated bytes ("" is no bytes).
fn option_hex(cx: &Cx<'_>, e: &str, h: &Spanned<String>) -> Result<Vec<u8>, ConfigError> {
    let data = if h.get_ref().is_empty() {
        Vec::new()
    } else {
        parse_hex(h.get_ref()).ok_or_else(|| {
            cx.error(
                h.span(),
                format!(
                    "{e}: hex {} is not colon-separated hex bytes (like \"01:ff:20\")",
                    q(h.get_ref())
                ),
            )
        })?
    };
    Ok(data)
}

/// `01:ff:20` → bytes.
pub(super) fn parse_hex(text: &str) -> Option<Vec<u8>> {
    text.split(':')
        .map(|b| {
            (b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect()
}
