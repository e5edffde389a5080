//! Runtime files of a distroless image: what the loader can't see and an
//! empty rootfs lacks. Users and groups, CA certificates, zoneinfo, glibc's
//! NSS modules and configuration, gconv modules, libgcc_s (which glibc
//! dlopens for thread cancellation) and /tmp — each for the platform's own
//! sysroot, each library with its closure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::loader::closure::Side;
use crate::plan::{Item, Plan, Planner};
use crate::recipe::{EntryKind, Group, ImagePath, Selection, SrcSpec, User};

/// Where Debian keeps the CA bundle (and where OpenSSL looks for it).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

type Deps = BTreeMap<(PathBuf, Side, PathBuf), String>;
type Later = Vec<(ImagePath, Item, String)>;

fn data(path: &str, bytes: Vec<u8>, why: &str) -> (ImagePath, Item, String) {
    (
        ImagePath::new(path).expect("runtime paths are valid"),
        Item::data(bytes, why).explicit(),
        why.to_string(),
    )
}

impl Planner<'_> {
    /// Add what the recipe's runtime keys ask for.
    ///
    /// On a base, `later` gets what must replace the base's (`/etc/passwd`
    /// and `/etc/group`, merged with the base's own), `implied` what is
    /// added only where the base has nothing.
    pub(crate) fn add_runtime(
        &self,
        deps: &mut Deps,
        later: &mut Later,
        implied: &mut Later,
    ) -> Result<()> {
        let rt = &self.recipe.runtime;
        if rt.tmp
            && !self
                .recipe_has(|k| matches!(k, EntryKind::Dir { dest, .. } if dest.as_str() == "/tmp"))
        {
            implied.push((
                ImagePath::new("/tmp").expect("valid"),
                Item::dir("tmp = true (the default)")
                    .with_mode(0o1777)
                    .explicit(),
                "tmp".into(),
            ));
        }
        if let Some((users, groups)) = &rt.users {
            let why = "users";
            let (passwd, group) = self.users_files(users, groups)?;
            later.push(data("/etc/passwd", passwd.into_bytes(), why));
            later.push(data("/etc/group", group.into_bytes(), why));
            for u in users
                .iter()
                .filter(|u| u.home != "/nonexistent" && u.home != "/")
            {
                let home = ImagePath::new(&u.home)
                    .map_err(|m| Error::msg(format!("users: home of {}: {m}", u.name)))?;
                implied.push((
                    home,
                    Item::dir(format!("users: home of {}", u.name))
                        .with_mode(0o700)
                        .with_owner(u.uid, u.gid)
                        .explicit(),
                    why.into(),
                ));
            }
        }
        if rt.ca_certificates {
            let label = "ca_certificates";
            let (_, _, host) = self.source(&SrcSpec::One(CA_BUNDLE.into())).map_err(|m| {
                Error::msg(format!(
                    "{label}: {m} (install ca-certificates in the sysroot)"
                ))
            })?;
            let size = std::fs::metadata(&host)
                .map_err(|e| Error::io("stat", &host, e))?
                .len();
            implied.push((
                ImagePath::new(CA_BUNDLE).expect("valid"),
                Item::file(host, size, label).explicit(),
                label.into(),
            ));
        }
        if let Some(sel) = &rt.tzdata {
            self.tzdata(sel, deps, implied)?;
        }
        if !rt.nss.is_empty() {
            self.nss(&rt.nss, deps, implied)?;
        }
        if let Some(sel) = &rt.gconv {
            self.gconv(sel, deps, implied)?;
        }
        // Last: glibc dlopens libgcc_s.so.1 for pthread_cancel and unwinding.
        if rt.libgcc_s != Some(false) && self.has_glibc() {
            self.library(
                "libgcc_s (glibc dlopens it for thread cancellation)",
                "libgcc_s.so.1",
                rt.libgcc_s == Some(true),
                deps,
            )?;
        } else if rt.libgcc_s == Some(true) {
            self.library("libgcc_s = true", "libgcc_s.so.1", true, deps)?;
        }
        Ok(())
    }

    /// `/etc/passwd` and `/etc/group`: the base's lines as they are (when
    /// there is a base), then each user and group it lacks. A name the base
    /// has with other ids is an error: the image would not be what the
    /// recipe says.
    fn users_files(&self, users: &[User], groups: &[Group]) -> Result<(String, String)> {
        let base = self.plan_ref().base.as_ref();
        let lower = |p: &str| {
            let mut text = base
                .and_then(|b| b.read(&ImagePath::new(p).expect("valid")))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text
        };
        let base_name = base.map(|b| b.name().to_string()).unwrap_or_default();
        // distroless's own users and groups (root, nobody, nonroot, …) are
        // left out where the base has their ids under its own names
        // (Debian's nogroup is 65534); the recipe's must not collide.
        let (default_users, default_groups) = crate::recipe::base_users();
        let fail = |what: String| Error::msg(format!("users: {what} in the base {base_name}"));
        let mut passwd = lower("/etc/passwd");
        // name → (uid, gid), and uid → name, of the base's lines.
        let fields = |l: &str| l.split(':').map(str::to_string).collect::<Vec<_>>();
        let lines: Vec<Vec<String>> = passwd
            .lines()
            .map(fields)
            .filter(|f| f.len() >= 4)
            .collect();
        for u in users {
            let same_name = lines.iter().find(|f| f[0] == u.name);
            let same_id = lines.iter().find(|f| f[2] == u.uid.to_string());
            match (same_name, same_id) {
                (Some(f), _) if f[2] == u.uid.to_string() && f[3] == u.gid.to_string() => {}
                (Some(f), _) => {
                    return Err(fail(format!(
                        "add user {} ({}:{}): /etc/passwd has {} as {}:{}",
                        u.name, u.uid, u.gid, u.name, f[2], f[3]
                    )))
                }
                (None, Some(_)) if default_users.contains(u) => {}
                (None, Some(f)) => {
                    return Err(fail(format!(
                        "add user {} (uid {}): /etc/passwd has uid {} as {}",
                        u.name, u.uid, u.uid, f[0]
                    )))
                }
                (None, None) => passwd.push_str(&format!(
                    "{}:x:{}:{}:{}:{}:{}\n",
                    u.name, u.uid, u.gid, u.name, u.home, u.shell
                )),
            }
        }
        let base_group = lower("/etc/group");
        // Every line kept, in order; only well-formed ones are matched.
        let mut lines: Vec<Vec<String>> = base_group.lines().map(fields).collect();
        let mut added = String::new();
        for g in groups {
            let same_name = lines.iter().position(|f| f.len() >= 3 && f[0] == g.name);
            let same_id = lines
                .iter()
                .position(|f| f.len() >= 3 && f[2] == g.gid.to_string());
            match (same_name, same_id) {
                (Some(i), _) if lines[i][2] == g.gid.to_string() => {
                    // The base's group: the recipe's members join it.
                    let line = &mut lines[i];
                    if line.len() < 4 {
                        line.push(String::new());
                    }
                    let mut members: Vec<String> = line[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect();
                    for m in &g.members {
                        if !members.contains(m) {
                            members.push(m.clone());
                        }
                    }
                    line[3] = members.join(",");
                }
                (Some(i), _) => {
                    return Err(fail(format!(
                        "add group {} ({}): /etc/group has {} as {}",
                        g.name, g.gid, g.name, lines[i][2]
                    )))
                }
                (None, Some(_)) if default_groups.contains(g) => {}
                (None, Some(i)) => {
                    return Err(fail(format!(
                        "add group {} (gid {}): /etc/group has gid {} as {}",
                        g.name, g.gid, g.gid, lines[i][0]
                    )))
                }
                (None, None) => {
                    added.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")))
                }
            }
        }
        let mut group: String = lines.iter().map(|f| f.join(":") + "\n").collect();
        group.push_str(&added);
        Ok((passwd, group))
    }

    /// `/etc/ld.so.cache` for the finished plan's libraries.
    pub(crate) fn add_ld_so_cache(&mut self) -> Result<()> {
        let want = match self.recipe.runtime.ld_so_cache {
            Some(w) => w,
            None => self.has_glibc(),
        };
        let at = ImagePath::new("/etc/ld.so.cache").expect("valid");
        if !want || self.plan_ref().entries.contains_key(&at) {
            return Ok(());
        }
        // On a base, the cache covers the base's libraries too: it replaces
        // the base's own.
        let merged;
        let over = match &self.plan_ref().base {
            Some(base) => {
                let mut all = Plan {
                    entries: base.items(),
                    ..Default::default()
                };
                all.entries.extend(
                    self.plan_ref()
                        .entries
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                merged = all;
                &merged
            }
            None => self.plan_ref(),
        };
        // Most libraries were parsed for the closures already.
        let bytes = crate::plan::ldcache::generate(
            over,
            self.toolchain.cache_flags,
            self.toolchain.little_endian,
            // Only the platform's own libraries (a base may hold others').
            |p| {
                self.resolver.parse_host_file(p).filter(|i| {
                    i.machine == self.toolchain.machine && i.class == self.toolchain.class
                })
            },
        );
        let (path, item, _) = data(
            "/etc/ld.so.cache",
            bytes,
            "ld.so.cache for the image's libraries",
        );
        self.plan_mut()
            .insert(&path, item)
            .map_err(|m| Error::msg(format!("ld.so.cache: place {path}: {m}")))
    }

    fn recipe_has(&self, f: impl Fn(&EntryKind) -> bool) -> bool {
        self.recipe.entries.iter().any(|e| f(&e.kind))
    }

    /// Does any closure hold glibc's libc.so.6?
    fn has_glibc(&self) -> bool {
        self.closures
            .borrow()
            .iter()
            .any(|c| c.closure.libraries.iter().any(|d| d.name == "libc.so.6"))
    }

    /// glibc's version (major, minor) from libc.so.6's version definitions.
    fn glibc_version(&self) -> Option<(u64, u64)> {
        let closures = self.closures.borrow();
        let libc = closures
            .iter()
            .flat_map(|c| c.closure.libraries.iter())
            .find(|d| d.name == "libc.so.6")?;
        let info = self.resolver.parse(libc.side, &libc.real).ok()?;
        info.verdef
            .iter()
            .filter_map(|v| v.strip_prefix("GLIBC_"))
            .filter_map(|v| {
                let mut p = v.split('.').map(|x| x.parse::<u64>().ok());
                Some((p.next()??, p.next().flatten().unwrap_or(0)))
            })
            .max()
    }

    fn tzdata(&self, sel: &Selection, deps: &mut Deps, later: &mut Later) -> Result<()> {
        let label = "tzdata";
        let root = Path::new("/usr/share/zoneinfo");
        match sel {
            Selection::All => {
                let dest = ImagePath::new("/usr/share/zoneinfo").expect("valid");
                let (side, path, host) = self
                    .source_any(&SrcSpec::One(root.to_string_lossy().into()))
                    .map_err(|m| Error::msg(format!("{label}: {m}")))?;
                self.tree(label, side, &path, &host, &dest, deps, later)
                    .map_err(|e| e.context("install tzdata in the sysroot"))
            }
            Selection::Only(zones) => {
                for z in zones {
                    let p = root.join(z);
                    self.source(&SrcSpec::One(p.to_string_lossy().into()))
                        .map_err(|m| Error::msg(format!("{label}: zone {z}: {m}")))?;
                    self.data_files
                        .borrow_mut()
                        .insert(p, format!("{label}: {z}"));
                }
                Ok(())
            }
        }
    }

    fn nss(&self, modules: &[String], deps: &mut Deps, later: &mut Later) -> Result<()> {
        // Since glibc 2.34, files and dns are built into libc.so.6.
        let builtin = self.glibc_version().is_some_and(|v| v >= (2, 34));
        for m in modules {
            if builtin && (m == "files" || m == "dns") {
                continue;
            }
            let label = format!("nss module {m}");
            self.library(&label, &format!("libnss_{m}.so.2"), true, deps)?;
        }
        let hosts = modules.join(" ");
        let users: Vec<&str> = modules
            .iter()
            .map(String::as_str)
            .filter(|m| {
                ![
                    "dns",
                    "mdns",
                    "mdns4",
                    "mdns6",
                    "mdns_minimal",
                    "mdns4_minimal",
                    "resolve",
                    "myhostname",
                ]
                .contains(m)
            })
            .collect();
        let users = if users.is_empty() {
            "files".to_string()
        } else {
            users.join(" ")
        };
        let conf = format!(
            "# Written by bareroot (nss = [{}]).\npasswd:         {users}\ngroup:          {users}\nshadow:         files\nhosts:          {hosts}\nnetworks:       files\nprotocols:      files\nservices:       files\nethers:         files\nrpc:            files\n",
            modules.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
        );
        later.push(data("/etc/nsswitch.conf", conf.into_bytes(), "nss"));
        later.push(data(
            "/etc/hosts",
            b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec(),
            "nss",
        ));
        Ok(())
    }

    fn gconv(&self, sel: &Selection, deps: &mut Deps, later: &mut Later) -> Result<()> {
        let label = "gconv";
        let dir = PathBuf::from(format!("/usr/lib/{}/gconv", self.toolchain.triplet));
        let (side, path, host) = self
            .source_any(&SrcSpec::One(dir.to_string_lossy().into()))
            .map_err(|m| Error::msg(format!("{label}: {m}")))?;
        if !host.is_dir() {
            return Err(Error::msg(format!(
                "{label}: {} is not in the sysroot for {} (it comes with libc6)",
                dir.display(),
                self.toolchain.platform
            )));
        }
        let charsets = match sel {
            Selection::All => {
                let dest =
                    ImagePath::from_path(&dir).map_err(|m| Error::msg(format!("{label}: {m}")))?;
                return self.tree(label, side, &path, &host, &dest, deps, later);
            }
            Selection::Only(c) => c,
        };
        // The configuration: gconv-modules, its .d directory and the cache.
        let mut conf_files = vec![dir.join("gconv-modules"), dir.join("gconv-modules.cache")];
        let d = host.join("gconv-modules.d");
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".conf"))
                .collect();
            names.sort();
            conf_files.extend(
                names
                    .into_iter()
                    .map(|n| dir.join("gconv-modules.d").join(n)),
            );
        }
        let mut text = String::new();
        for f in &conf_files {
            if self
                .source(&SrcSpec::One(f.to_string_lossy().into()))
                .is_ok()
            {
                if !f.ends_with("gconv-modules.cache") {
                    let h = self.resolver.fs(Side::Sysroot).host_path(f);
                    text.push_str(&std::fs::read_to_string(&h).unwrap_or_default());
                    text.push('\n');
                }
                self.data_files
                    .borrow_mut()
                    .insert(f.clone(), label.to_string());
            }
        }
        // `alias NAME TARGET` and `module FROM TO FILE COST` lines.
        let mut aliases: BTreeMap<String, String> = BTreeMap::new();
        let mut modules: Vec<(String, String, String)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            match f.as_slice() {
                ["alias", a, t] => {
                    aliases.insert(a.to_uppercase(), t.to_uppercase());
                }
                ["module", from, to, file, ..] => {
                    modules.push((from.to_uppercase(), to.to_uppercase(), file.to_string()))
                }
                _ => {}
            }
        }
        let canon = |c: &str| {
            let mut n = c.to_uppercase();
            if !n.ends_with("//") {
                n.push_str("//");
            }
            aliases.get(&n).cloned().unwrap_or(n)
        };
        let mut files = BTreeSet::new();
        for c in charsets {
            let name = canon(c);
            let mut found = false;
            for (from, to, file) in &modules {
                if (from == &name || to == &name) && file != "INTERNAL" {
                    files.insert(file.clone());
                    found = true;
                }
            }
            if !found && name != "UTF-8//" && name != "ISO-10646/UTF8/" && name != "INTERNAL" {
                return Err(Error::msg(format!(
                    "{label}: no gconv module converts {c} (in {})",
                    dir.display()
                )));
            }
        }
        for f in files {
            let p = if f.starts_with('/') {
                PathBuf::from(&f)
            } else {
                dir.join(&f)
            };
            let p = if p.extension().is_some_and(|e| e == "so") {
                p
            } else {
                p.with_extension("so")
            };
            self.library(label, &p.to_string_lossy(), true, deps)?;
        }
        Ok(())
    }
}
