//! `--userns` modes and `--uidmap`/`--gidmap`, turned into the container's ID mapping.
//!
//! Rootless, podman counts host IDs in its own user namespace (0 is the user, 1.. the
//! subordinate IDs in /etc/subuid order); skiff has no such intermediate namespace, so
//! every mapping is written in those terms and translated through the user's default
//! mapping to real host IDs before newuidmap sees it. Users type what they type for
//! podman, and /proc/self/uid_map shows real host IDs.

use super::{IdMapping, IdRange, UsernsError};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernsMode {
    /// Rootless: the user as root, subordinate IDs from 1. Rootful: no user namespace.
    Default,
    /// No user namespace (root only).
    Host,
    /// The user's own UID/GID appear inside as themselves (or as uid=/gid=).
    KeepId { uid: Option<u32>, gid: Option<u32> },
    /// Only subordinate IDs; the user's own ID is not mapped.
    NoMap,
    /// A free slice of the subordinate range, recorded in the store; `uids`/`gids` are
    /// podman's `uidmapping=`/`gidmapping=` extras (container IDs they cover are taken
    /// out of the slice's order, host IDs in podman's rootless terms).
    Auto {
        size: Option<u32>,
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
    },
    /// --uidmap/--gidmap, in podman's terms.
    Custom {
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
    },
}

/// Default slice size of `--userns=auto`, as podman uses for small images.
pub const AUTO_DEFAULT_SIZE: u32 = 1024;

fn bad(flag: &'static str, detail: String) -> UsernsError {
    UsernsError::BadMode { flag, detail }
}

fn parse_map(flag: &'static str, v: &[String]) -> Result<Vec<IdRange>, UsernsError> {
    let mut out = Vec::new();
    for s in v {
        let f: Vec<&str> = s.split(':').collect();
        let nums: Option<Vec<u32>> = f.iter().map(|x| x.trim().parse().ok()).collect();
        match nums.as_deref() {
            Some([c, h, n]) if *n > 0 => out.push(IdRange {
                inside: *c,
                outside: *h,
                count: *n,
            }),
            _ => {
                return Err(bad(
                    flag,
                    format!(
                    "invalid mapping {s:?}: use CONTAINER-ID:HOST-ID:COUNT with a count above 0"
                ),
                ))
            }
        }
    }
    check_disjoint(flag, &out)?;
    Ok(out)
}

fn overlaps(a: u32, an: u32, b: u32, bn: u32) -> bool {
    (a as u64) < b as u64 + bn as u64 && (b as u64) < a as u64 + an as u64
}

/// Neither the container side nor the host side of two ranges may overlap: the kernel
/// would refuse the map, and podman refuses it first.
fn check_disjoint(flag: &'static str, v: &[IdRange]) -> Result<(), UsernsError> {
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            if overlaps(a.inside, a.count, b.inside, b.count)
                || overlaps(a.outside, a.count, b.outside, b.count)
            {
                return Err(bad(
                    flag,
                    format!(
                        "the mapping {}:{}:{} conflicts with {}:{}:{}: ranges must not overlap",
                        b.inside, b.outside, b.count, a.inside, a.outside, a.count
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn parse_opts(mode: &str, opts: &str, keys: &[&str]) -> Result<Vec<(String, u32)>, UsernsError> {
    let mut out = Vec::new();
    for kv in opts.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if !keys.contains(&k) {
            return Err(bad(
                "--userns",
                format!("unknown option {k:?} for {mode}: use {}", keys.join(", ")),
            ));
        }
        let n: u32 = v.parse().map_err(|_| {
            bad(
                "--userns",
                format!("invalid value {v:?} for {k} in {mode}: give a number"),
            )
        })?;
        out.push((k.to_string(), n));
    }
    Ok(out)
}

/// Parses --userns, --uidmap and --gidmap together (they exclude each other).
pub fn parse(
    userns: Option<&str>,
    uidmaps: &[String],
    gidmaps: &[String],
) -> Result<UsernsMode, UsernsError> {
    let custom = !uidmaps.is_empty() || !gidmaps.is_empty();
    if custom {
        if let Some(u) = userns {
            return Err(bad(
                "--userns",
                format!("--userns={u} cannot be combined with --uidmap/--gidmap: give one of them"),
            ));
        }
        let mut uids = parse_map("--uidmap", uidmaps)?;
        let mut gids = parse_map("--gidmap", gidmaps)?;
        // podman uses one list for both when only one is given.
        if uids.is_empty() {
            uids = gids.clone();
        }
        if gids.is_empty() {
            gids = uids.clone();
        }
        return Ok(UsernsMode::Custom { uids, gids });
    }
    let Some(u) = userns.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(UsernsMode::Default);
    };
    let (mode, opts) = u.split_once(':').unwrap_or((u, ""));
    match mode {
        "" | "private" if opts.is_empty() => Ok(UsernsMode::Default),
        "host" if opts.is_empty() => Ok(UsernsMode::Host),
        "nomap" if opts.is_empty() => Ok(UsernsMode::NoMap),
        "keep-id" => {
            let mut m = (None, None);
            for (k, v) in parse_opts(mode, opts, &["uid", "gid"])? {
                if k == "uid" {
                    m.0 = Some(v);
                } else {
                    m.1 = Some(v);
                }
            }
            Ok(UsernsMode::KeepId { uid: m.0, gid: m.1 })
        }
        "auto" => parse_auto(opts),
        _ => Err(bad(
            "--userns",
            format!("invalid user namespace mode {u:?}: use host, keep-id[:uid=UID,gid=GID], nomap, auto[:size=N,uidmapping=C:H:N,gidmapping=C:H:N] or --uidmap"),
        )),
    }
}

/// `auto[:size=N,uidmapping=C:H:N,gidmapping=C:H:N]`; podman separates options with
/// commas, and a mapping's own fields with colons, so they split cleanly.
fn parse_auto(opts: &str) -> Result<UsernsMode, UsernsError> {
    let (mut size, mut uids, mut gids) = (None, Vec::new(), Vec::new());
    for kv in opts.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "size" => {
                let n: u32 = v.parse().map_err(|_| {
                    bad(
                        "--userns",
                        format!(
                            "invalid value {v:?} for size in auto: give a number of IDs above 0"
                        ),
                    )
                })?;
                if n == 0 {
                    return Err(bad("--userns", "auto: size must be above 0".into()));
                }
                size = Some(n);
            }
            "uidmapping" => uids.extend(parse_map("--userns", &[v.to_string()])?),
            "gidmapping" => gids.extend(parse_map("--userns", &[v.to_string()])?),
            _ => {
                return Err(bad(
                    "--userns",
                    format!("unknown option {k:?} for auto: use size, uidmapping, gidmapping"),
                ))
            }
        }
    }
    check_disjoint("--userns", &uids)?;
    check_disjoint("--userns", &gids)?;
    Ok(UsernsMode::Auto { size, uids, gids })
}

/// The auto slice `[start, start+n)` (intermediate terms) spread over container IDs
/// `0..n` that the explicit extras leave free, followed by the extras, as
/// containers-storage builds it.
fn auto_ranges(start: u32, n: u32, extra: &[IdRange]) -> Vec<IdRange> {
    let mut out = Vec::new();
    let (mut inside, mut at, mut left) = (0u64, start as u64, n as u64);
    while left > 0 {
        // Skip container IDs an extra mapping covers.
        if let Some(e) = extra
            .iter()
            .find(|e| inside >= e.inside as u64 && inside < e.inside as u64 + e.count as u64)
        {
            inside = e.inside as u64 + e.count as u64;
            continue;
        }
        let next = extra
            .iter()
            .map(|e| e.inside as u64)
            .filter(|&i| i > inside)
            .min()
            .unwrap_or(u64::MAX);
        let take = left.min(next - inside);
        out.push(IdRange {
            inside: inside as u32,
            outside: at as u32,
            count: take as u32,
        });
        inside += take;
        at += take;
        left -= take;
    }
    out.extend_from_slice(extra);
    out.sort_by_key(|r| r.inside);
    out
}

/// How many IDs the intermediate (podman-style) space has: 1 + subordinate IDs.
pub fn space(default: &[IdRange]) -> u64 {
    default.iter().map(|r| r.count as u64).sum()
}

/// Translates ranges whose `outside` counts in the intermediate space into real host
/// IDs through the user's default mapping (splitting where subordinate ranges end).
pub fn translate(
    flag: &'static str,
    default: &[IdRange],
    wanted: &[IdRange],
) -> Result<Vec<IdRange>, UsernsError> {
    let mut out = Vec::new();
    for w in wanted {
        let (mut inside, mut at, mut left) = (w.inside as u64, w.outside as u64, w.count as u64);
        while left > 0 {
            let d = default
                .iter()
                .find(|d| at >= d.inside as u64 && at < d.inside as u64 + d.count as u64)
                .ok_or_else(|| {
                    bad(
                        flag,
                        format!(
                            "ID {at} of {}:{}:{} is outside your user namespace (IDs 0 to {}): check /etc/subuid and /etc/subgid",
                            w.inside,
                            w.outside,
                            w.count,
                            space(default).saturating_sub(1)
                        ),
                    )
                })?;
            let off = at - d.inside as u64;
            let n = left.min(d.count as u64 - off);
            out.push(IdRange {
                inside: inside as u32,
                outside: (d.outside as u64 + off) as u32,
                count: n as u32,
            });
            inside += n;
            at += n;
            left -= n;
        }
    }
    Ok(out)
}

/// The reverse of [`translate`]: host IDs back into the intermediate space (for
/// inspect), merging ranges that translate split; IDs outside it stay as they are.
pub fn untranslate(default: &[IdRange], host: &[IdRange]) -> Vec<IdRange> {
    let mut out: Vec<IdRange> = Vec::new();
    for h in host {
        let (mut inside, mut at, mut left) = (h.inside as u64, h.outside as u64, h.count as u64);
        while left > 0 {
            let (outside, n) = match default
                .iter()
                .find(|d| at >= d.outside as u64 && at < d.outside as u64 + d.count as u64)
            {
                Some(d) => (
                    d.inside as u64 + (at - d.outside as u64),
                    left.min(d.outside as u64 + d.count as u64 - at),
                ),
                None => (at, left),
            };
            match out.last_mut() {
                Some(l)
                    if l.inside as u64 + l.count as u64 == inside
                        && l.outside as u64 + l.count as u64 == outside =>
                {
                    l.count += n as u32
                }
                _ => out.push(IdRange {
                    inside: inside as u32,
                    outside: outside as u32,
                    count: n as u32,
                }),
            }
            inside += n;
            at += n;
            left -= n;
        }
    }
    out
}

/// keep-id in intermediate terms: 0..t from the subordinate IDs, t as the user (0),
/// the rest after it, as podman lays it out.
fn keep_id_ranges(flag: &'static str, t: u32, total: u64) -> Result<Vec<IdRange>, UsernsError> {
    if (t as u64) + 1 >= total {
        return Err(bad(
            flag,
            format!("keep-id: ID {t} does not fit in your {total} mapped IDs: add subordinate IDs to /etc/subuid and /etc/subgid"),
        ));
    }
    let mut v = Vec::new();
    if t > 0 {
        v.push(IdRange {
            inside: 0,
            outside: 1,
            count: t,
        });
    }
    v.push(IdRange {
        inside: t,
        outside: 0,
        count: 1,
    });
    let rest = total - 1 - t as u64;
    if rest > 0 {
        v.push(IdRange {
            inside: t + 1,
            outside: t + 1,
            count: rest as u32,
        });
    }
    Ok(v)
}

/// The rootless mapping for a mode, given the user's default mapping, their own IDs
/// (for keep-id) and, for auto, the start of the slice the store allotted.
pub fn rootless_mapping(
    mode: &UsernsMode,
    default: &IdMapping,
    own: (u32, u32),
    auto_start: Option<u32>,
) -> Result<IdMapping, UsernsError> {
    let (tu, tg) = (space(&default.uids), space(&default.gids));
    let build = |flag, u: Vec<IdRange>, g: Vec<IdRange>| -> Result<IdMapping, UsernsError> {
        Ok(IdMapping {
            uids: translate(flag, &default.uids, &u)?,
            gids: translate(flag, &default.gids, &g)?,
        })
    };
    match mode {
        UsernsMode::Default => Ok(default.clone()),
        UsernsMode::Host => Err(bad(
            "--userns",
            "host is only for root: a rootless container always has a user namespace; drop --userns=host (or use --userns=keep-id to keep your own UID)".into(),
        )),
        UsernsMode::KeepId { uid, gid } => {
            let u = keep_id_ranges("--userns", uid.unwrap_or(own.0), tu)?;
            let g = keep_id_ranges("--userns", gid.unwrap_or(own.1), tg)?;
            build("--userns", u, g)
        }
        UsernsMode::NoMap => {
            if tu < 2 || tg < 2 {
                return Err(bad(
                    "--userns",
                    "nomap needs subordinate IDs: ask an admin to add your user to /etc/subuid and /etc/subgid".into(),
                ));
            }
            let one = |n: u64| {
                vec![IdRange {
                    inside: 0,
                    outside: 1,
                    count: (n - 1) as u32,
                }]
            };
            build("--userns", one(tu), one(tg))
        }
        UsernsMode::Auto { size, uids, gids } => {
            let start = auto_start.ok_or_else(|| bad("--userns", "auto: no range allotted".into()))?;
            let n = size.unwrap_or(AUTO_DEFAULT_SIZE);
            build(
                "--userns",
                auto_ranges(start, n, uids),
                auto_ranges(start, n, gids),
            )
        }
        UsernsMode::Custom { uids, gids } => {
            Ok(IdMapping {
                uids: translate("--uidmap", &default.uids, uids)?,
                gids: translate("--gidmap", &default.gids, gids)?,
            })
        }
    }
}

/// The container user keep-id implies when --user is not given: the kept IDs.
pub fn default_user(mode: &UsernsMode, own: (u32, u32)) -> Option<String> {
    match mode {
        UsernsMode::KeepId { uid, gid } => {
            Some(format!("{}:{}", uid.unwrap_or(own.0), gid.unwrap_or(own.1)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(inside: u32, outside: u32, count: u32) -> IdRange {
        IdRange {
            inside,
            outside,
            count,
        }
    }

    fn default() -> IdMapping {
        IdMapping {
            uids: vec![r(0, 1001, 1), r(1, 200000, 65536)],
            gids: vec![r(0, 1001, 1), r(1, 200000, 65536)],
        }
    }

    #[test]
    fn keep_id_matches_podman() {
        let m = rootless_mapping(
            &parse(Some("keep-id"), &[], &[]).unwrap(),
            &default(),
            (1001, 1001),
            None,
        )
        .unwrap();
        // podman shows 0 1 1001 / 1001 0 1 / 1002 1002 64535 in its own namespace.
        assert_eq!(
            m.uids,
            vec![r(0, 200000, 1001), r(1001, 1001, 1), r(1002, 201001, 64535)]
        );
        assert_eq!(
            default_user(
                &UsernsMode::KeepId {
                    uid: None,
                    gid: None
                },
                (1001, 1001)
            )
            .as_deref(),
            Some("1001:1001")
        );
    }

    #[test]
    fn nomap_auto_custom() {
        let d = default();
        let m = rootless_mapping(&UsernsMode::NoMap, &d, (1001, 1001), None).unwrap();
        assert_eq!(m.uids, vec![r(0, 200000, 65536)]);
        let m = rootless_mapping(
            &UsernsMode::Auto {
                size: Some(10),
                uids: vec![],
                gids: vec![],
            },
            &d,
            (1001, 1001),
            Some(5),
        )
        .unwrap();
        assert_eq!(m.gids, vec![r(0, 200004, 10)]);
        let c = parse(None, &["0:0:1".into(), "1:1:1000".into()], &[]).unwrap();
        let m = rootless_mapping(&c, &d, (1001, 1001), None).unwrap();
        assert_eq!(m.uids, vec![r(0, 1001, 1), r(1, 200000, 1000)]);
        assert!(parse(None, &["0:1:100".into(), "50:200:10".into()], &[]).is_err());
        assert!(parse(None, &["0:1".into()], &[]).is_err());
        let far = parse(None, &["0:70000:10".into()], &[]).unwrap();
        assert!(rootless_mapping(&far, &d, (1001, 1001), None).is_err());
        assert!(parse(Some("bogus"), &[], &[]).is_err());
        assert!(parse(Some("keep-id:uid=x"), &[], &[]).is_err());
        assert!(rootless_mapping(&UsernsMode::Host, &d, (1001, 1001), None).is_err());
    }

    #[test]
    fn auto_options() {
        let m = parse(Some("auto:size=100,uidmapping=0:0:1"), &[], &[]).unwrap();
        let m = rootless_mapping(&m, &default(), (1001, 1001), Some(1)).unwrap();
        // Container 0 is the user (podman's host 0); 1..99 come from the slice.
        assert_eq!(m.uids, vec![r(0, 1001, 1), r(1, 200000, 100)]);
        assert_eq!(m.gids, vec![r(0, 200000, 100)]);
        assert!(parse(Some("auto:size=0"), &[], &[]).is_err());
        assert!(parse(Some("auto:size=x"), &[], &[]).is_err());
        assert!(parse(Some("auto:uidmapping=0:1"), &[], &[]).is_err());
        assert!(parse(Some("auto:bogus=1"), &[], &[]).is_err());
        // inspect shows podman's terms again.
        let k = rootless_mapping(
            &parse(Some("keep-id"), &[], &[]).unwrap(),
            &default(),
            (1001, 1001),
            None,
        )
        .unwrap();
        assert_eq!(
            untranslate(&default().uids, &k.uids),
            vec![r(0, 1, 1001), r(1001, 0, 1), r(1002, 1002, 64535)]
        );
    }
}
