//! `auth enable|disable`, `user ...`, `role ...`.

use std::io::BufRead;

use oxcd_api::authpb::{Permission, UserAddOptions};
use oxcd_api::etcdserverpb::*;
use oxcd_api::EtcdError;
use oxcd_client::{prefix_end, Client};

use crate::cli::{AuthCommand, PermissionArgs, RoleCommand, UserCommand};
use crate::context::{emit, Ctx};
use crate::exit::{code, error_text, CmdResult, Exit};

fn bad_args(message: impl Into<String>) -> Exit {
    Exit::new(code::BAD_ARGS, message)
}

pub async fn auth(ctx: &Ctx, command: AuthCommand) -> CmdResult {
    match command {
        AuthCommand::Enable(a) => {
            if !a.args.is_empty() {
                return Err(bad_args(
                    "auth enable command does not accept any arguments",
                ));
            }
            let client = ctx.client().await?;
            // As etcdctl: create the root role on the way if it is missing.
            loop {
                match client.auth().auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(e) if e.etcd() == Some(EtcdError::RootRoleNotExist) => {
                        let endpoint = ctx.flags.endpoints.first().cloned().unwrap_or_default();
                        let text = format!(
                            "rpc error: code = FailedPrecondition desc = {}",
                            error_text(&e)
                        );
                        crate::retry_log::warn_failed_request(&endpoint, &text);
                        ctx.request(client.auth().role_add(AuthRoleAddRequest {
                            name: "root".into(),
                        }))
                        .await?;
                        ctx.request(client.auth().user_grant_role(AuthUserGrantRoleRequest {
                            user: "root".into(),
                            role: "root".into(),
                        }))
                        .await?;
                    }
                    Err(e) => return Err(Exit::request(code::ERROR, &e)),
                }
            }
            println!("Authentication Enabled");
            Ok(())
        }
        AuthCommand::Disable(a) => {
            if !a.args.is_empty() {
                return Err(bad_args(
                    "auth disable command does not accept any arguments",
                ));
            }
            let client = ctx.client().await?;
            ctx.request(client.auth().auth_disable(AuthDisableRequest {}))
                .await?;
            println!("Authentication Disabled");
            Ok(())
        }
    }
}

/// Reads a password as etcdctl does: a word from stdin, or asked twice on the terminal.
fn read_password(name: &str, interactive: bool) -> Result<String, Exit> {
    let stdin = std::io::stdin();
    let read_line = || {
        let mut line = String::new();
        let _ = stdin.lock().read_line(&mut line);
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if !interactive {
        return Ok(read_line()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned());
    }
    print!("Password of {name}: ");
    let first = read_line();
    println!();
    if first.is_empty() {
        return Err(bad_args("empty password"));
    }
    print!("Type password of {name} again for confirmation: ");
    let second = read_line();
    println!();
    if first != second {
        return Err(bad_args("given passwords are different"));
    }
    Ok(first)
}

pub async fn user(ctx: &Ctx, command: UserCommand) -> CmdResult {
    let printer = ctx.printer()?;
    match command {
        UserCommand::Add {
            interactive,
            new_user_password,
            no_password,
            args,
        } => {
            let [arg] = args.as_slice() else {
                return Err(bad_args(
                    "user add command requires user name as its argument",
                ));
            };
            let (name, password) = if no_password {
                (arg.clone(), String::new())
            } else if !new_user_password.is_empty() {
                (arg.clone(), new_user_password)
            } else if let Some((name, password)) = arg.split_once(':') {
                if name.is_empty() {
                    return Err(bad_args("empty user name is not allowed"));
                }
                (name.to_owned(), password.to_owned())
            } else {
                (arg.clone(), read_password(arg, interactive)?)
            };
            let client = ctx.client().await?;
            let request = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password }),
                ..Default::default()
            };
            let r = ctx.request(client.auth().user_add(request)).await?;
            emit(printer.auth(format!("User {name} created\n"), &r.header, &r))
        }
        UserCommand::Delete(a) => {
            let [name] = a.args.as_slice() else {
                return Err(bad_args(
                    "user delete command requires user name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let r = ctx
                .request(
                    client
                        .auth()
                        .user_delete(AuthUserDeleteRequest { name: name.clone() }),
                )
                .await?;
            emit(printer.auth(format!("User {name} deleted\n"), &r.header, &r))
        }
        UserCommand::Get { detail, args } => {
            let [name] = args.as_slice() else {
                return Err(bad_args(
                    "user get command requires user name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let r = ctx
                .request(
                    client
                        .auth()
                        .user_get(AuthUserGetRequest { name: name.clone() }),
                )
                .await?;
            if !detail {
                return emit(printer.user_get(name, &r));
            }
            println!("User: {name}");
            for role in &r.roles {
                println!();
                let role_response = ctx
                    .request(
                        client
                            .auth()
                            .role_get(AuthRoleGetRequest { role: role.clone() }),
                    )
                    .await?;
                emit(printer.role_get(role, &role_response))?;
            }
            Ok(())
        }
        UserCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(bad_args("user list command requires no arguments"));
            }
            let client = ctx.client().await?;
            let r = ctx
                .request(client.auth().user_list(AuthUserListRequest {}))
                .await?;
            emit(printer.names("Users", "users", &r.users, &r.header, &r))
        }
        UserCommand::Passwd { interactive, args } => {
            let [name] = args.as_slice() else {
                return Err(bad_args(
                    "user passwd command requires user name as its argument",
                ));
            };
            let password = read_password(name, interactive)?;
            let client = ctx.client().await?;
            let request = AuthUserChangePasswordRequest {
                name: name.clone(),
                password,
                ..Default::default()
            };
            let r = ctx
                .request(client.auth().user_change_password(request))
                .await?;
            emit(printer.auth("Password updated\n".into(), &r.header, &r))
        }
        UserCommand::GrantRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let request = AuthUserGrantRoleRequest {
                user: user.clone(),
                role: role.clone(),
            };
            let r = ctx.request(client.auth().user_grant_role(request)).await?;
            emit(printer.auth(
                format!("Role {role} is granted to user {user}\n"),
                &r.header,
                &r,
            ))
        }
        UserCommand::RevokeRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(bad_args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            };
            let client = ctx.client().await?;
            let request = AuthUserRevokeRoleRequest {
                name: user.clone(),
                role: role.clone(),
            };
            let r = ctx.request(client.auth().user_revoke_role(request)).await?;
            emit(printer.auth(
                format!("Role {role} is revoked from user {user}\n"),
                &r.header,
                &r,
            ))
        }
    }
}

/// Key and range end of a permission, as etcdctl's `permRange`.
fn perm_range(a: &PermissionArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), Exit> {
    let exclusive = || bad_args("--from-key and --prefix flags are mutually exclusive");
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(exclusive());
        }
        let end = if a.prefix || a.from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), a.prefix, a.from_key) {
        (None, true, true) => return Err(exclusive()),
        (None, true, false) => prefix_end(&key),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (Some(_), true, _) => {
            return Err(bad_args("unexpected endkey argument with --prefix flag"))
        }
        (Some(_), _, true) => {
            return Err(bad_args("unexpected endkey argument with --from-key flag"))
        }
        (Some(end), false, false) => end.as_bytes().to_vec(),
    };
    Ok((key, end))
}

pub async fn role(ctx: &Ctx, command: RoleCommand) -> CmdResult {
    let printer = ctx.printer()?;
    let one = |args: &[String], verb: &str| match args {
        [name] => Ok(name.clone()),
        _ => Err(bad_args(format!(
            "role {verb} command requires role name as its argument"
        ))),
    };
    let client: Client;
    match command {
        RoleCommand::Add(a) => {
            let name = one(&a.args, "add")?;
            client = ctx.client().await?;
            let r = ctx
                .request(
                    client
                        .auth()
                        .role_add(AuthRoleAddRequest { name: name.clone() }),
                )
                .await?;
            emit(printer.auth(format!("Role {name} created\n"), &r.header, &r))
        }
        RoleCommand::Delete(a) => {
            let role = one(&a.args, "delete")?;
            client = ctx.client().await?;
            let r = ctx
                .request(
                    client
                        .auth()
                        .role_delete(AuthRoleDeleteRequest { role: role.clone() }),
                )
                .await?;
            emit(printer.auth(format!("Role {role} deleted\n"), &r.header, &r))
        }
        RoleCommand::Get(a) => {
            let role = one(&a.args, "get")?;
            client = ctx.client().await?;
            let r = ctx
                .request(
                    client
                        .auth()
                        .role_get(AuthRoleGetRequest { role: role.clone() }),
                )
                .await?;
            emit(printer.role_get(&role, &r))
        }
        RoleCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(bad_args("role list command requires no arguments"));
            }
            client = ctx.client().await?;
            let r = ctx
                .request(client.auth().role_list(AuthRoleListRequest {}))
                .await?;
            emit(printer.names("Roles", "roles", &r.roles, &r.header, &r))
        }
        RoleCommand::GrantPermission(a) => {
            if a.args.len() < 3 {
                return Err(bad_args("role grant command requires role name, permission type, and key [endkey] as its argument"));
            }
            let perm_type = match a.args[1].to_uppercase().as_str() {
                "READ" => 0,
                "WRITE" => 1,
                "READWRITE" => 2,
                _ => return Err(bad_args(format!("invalid permission type: {}", a.args[1]))),
            };
            let (key, range_end) = perm_range(&a, &a.args[2..])?;
            client = ctx.client().await?;
            let request = AuthRoleGrantPermissionRequest {
                name: a.args[0].clone(),
                perm: Some(Permission {
                    perm_type,
                    key,
                    range_end,
                }),
            };
            let r = ctx
                .request(client.auth().role_grant_permission(request))
                .await?;
            emit(printer.auth(format!("Role {} updated\n", a.args[0]), &r.header, &r))
        }
        RoleCommand::RevokePermission(a) => {
            if a.args.len() < 2 {
                return Err(bad_args("role revoke-permission command requires role name and key [endkey] as its argument"));
            }
            let (key, range_end) = perm_range(&a, &a.args[1..])?;
            client = ctx.client().await?;
            let request = AuthRoleRevokePermissionRequest {
                role: a.args[0].clone(),
                key: key.clone(),
                range_end: range_end.clone(),
            };
            let r = ctx
                .request(client.auth().role_revoke_permission(request))
                .await?;
            let (role, key_text) = (&a.args[0], &a.args[1]);
            let simple = if range_end.is_empty() {
                format!("Permission of key {key_text} is revoked from role {role}\n")
            } else if range_end == [0] {
                format!(
                    "Permission of range [{key_text}, <open ended> is revoked from role {role}\n"
                )
            } else {
                format!(
                    "Permission of range [{key_text}, {}) is revoked from role {role}\n",
                    String::from_utf8_lossy(&range_end)
                )
            };
            emit(printer.auth(simple, &r.header, &r))
        }
    }
}
