//! `txn`: compares, success and failure operations read from stdin, one per line, each
//! block ended by an empty line, as etcdctl reads them.

use std::io::BufRead;

use clap::Parser;
use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{Compare, RequestOp, TxnRequest};
use regex::Regex;

use super::kv::{del_request, get_request, put_request};
use crate::cli::{DelArgs, GetArgs, PutArgs, TxnArgs};
use crate::context::{emit, Ctx};
use crate::exit::{code, CmdResult, Exit};
use crate::go;

pub async fn txn(ctx: &Ctx, a: TxnArgs) -> CmdResult {
    if !a.args.is_empty() {
        return Err(Exit::new(
            code::BAD_ARGS,
            "txn command does not accept argument",
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |text: &str| {
        if a.interactive {
            println!("{text}");
        }
    };
    prompt("compares:");
    let compare = read_block(&mut input, parse_compare)?;
    prompt("success requests (get, put, del):");
    let success = read_block(&mut input, parse_op)?;
    prompt("failure requests (get, put, del):");
    let failure = read_block(&mut input, parse_op)?;
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    let response = ctx.request(client.kv().txn(request)).await?;
    emit(printer.txn(&response))
}

/// Lines up to an empty one, each parsed by `parse`; end of input is an error, as in etcdctl.
fn read_block<T>(
    input: &mut impl BufRead,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, Exit> {
    let mut items = Vec::new();
    loop {
        let mut line = String::new();
        let read = input
            .read_line(&mut line)
            .map_err(|e| Exit::new(code::INVALID_INPUT, e.to_string()))?;
        if read == 0 || !line.ends_with('\n') {
            return Err(Exit::new(code::INVALID_INPUT, "EOF"));
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(items);
        }
        items.push(parse(line).map_err(|e| Exit::new(code::INVALID_INPUT, e))?);
    }
}

/// `target("key") op "value"`, e.g. `mod("k") > "3"` or `value("k") = "v"`.
fn parse_compare(line: &str) -> Result<Compare, String> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(format!("malformed comparison: {line}"));
    };
    let mut scan = Scanner { rest };
    let key = scan.quoted();
    let op = key.as_ref().and_then(|_| {
        scan.rest = scan.rest.strip_prefix(')')?;
        scan.word()
    });
    let value = op.as_ref().and_then(|_| scan.quoted());
    let (Some(key), Some(op), Some(value)) = (key.clone(), op.clone(), value.clone()) else {
        return Err(format!(
            "malformed comparison: {line}; got {target}({}) {} {}",
            go::quote(key.unwrap_or_default().as_bytes()),
            op.unwrap_or_default(),
            go::quote(value.unwrap_or_default().as_bytes()),
        ));
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => return Err(format!("malformed comparison: {line} (unknown op {op})")),
    };
    let number = || {
        value
            .parse::<i64>()
            .map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number()?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number()?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number()?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(value.clone().into_bytes()),
        ),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number()?)),
        other => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {other})"
            ))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        target_union: Some(union),
        range_end: Vec::new(),
    })
}

/// Reads what Go's `fmt.Sscanf("%q) %s %q")` reads.
struct Scanner<'a> {
    rest: &'a str,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// A Go quoted string: `"..."` with escapes, or a back-quoted raw string.
    fn quoted(&mut self) -> Option<String> {
        self.skip_space();
        if let Some(raw) = self.rest.strip_prefix('`') {
            let end = raw.find('`')?;
            self.rest = &raw[end + 1..];
            return Some(raw[..end].to_owned());
        }
        let body = self.rest.strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &body[i + 1..];
                    return Some(out);
                }
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        None
    }

    fn word(&mut self) -> Option<String> {
        self.skip_space();
        let end = self
            .rest
            .find(char::is_whitespace)
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let word = self.rest[..end].to_owned();
        self.rest = &self.rest[end..];
        Some(word)
    }
}

/// A `get`, `put` or `del` line, with the commands' own flags.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, infer_subcommands = true)]
enum OpLine {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

fn parse_op(line: &str) -> Result<RequestOp, String> {
    let invalid = || format!("invalid txn request: {line}");
    let args = argify(line);
    if args.len() < 2 {
        return Err(format!("invalid txn compare request: {line}"));
    }
    let request = match OpLine::try_parse_from(&args).map_err(|_| invalid())? {
        OpLine::Get(a) => Request::RequestRange(get_request(&a).map_err(|_| invalid())?),
        OpLine::Put(a) => Request::RequestPut(put_request(&a, || None).map_err(|_| invalid())?),
        OpLine::Del(a) => Request::RequestDeleteRange(del_request(&a).map_err(|_| invalid())?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// Splits a line as etcdctl's `argify`: double-quoted strings (with escapes), single-quoted
/// strings, or runs of non-space.
pub fn argify(line: &str) -> Vec<String> {
    let words = Regex::new(r#""(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?"#).expect("valid regex");
    words
        .find_iter(line)
        .map(|m| {
            let word = m.as_str();
            if let Some(inner) = word.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
                inner.to_owned()
            } else if word.starts_with('"') {
                Scanner { rest: word }.quoted().unwrap_or_default()
            } else {
                word.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse_like_etcdctl() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1");
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        assert!(parse_compare("nonsense")
            .unwrap_err()
            .starts_with("malformed comparison"));
        assert_eq!(
            parse_compare(r#"foo("k") = "1""#).unwrap_err(),
            r#"malformed comparison: foo("k") = "1" (unknown target foo)"#
        );
    }

    #[test]
    fn argify_splits_quotes() {
        assert_eq!(argify(r#"put k "a b""#), ["put", "k", "a b"]);
        assert_eq!(argify("put k 'x y'"), ["put", "k", "x y"]);
    }
}
