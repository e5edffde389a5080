//! Command-line types (clap derive). No behaviour here: see [`crate::app`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Assemble minimal, reproducible OCI images from host binaries and the
/// exact shared-library closure the dynamic loader would open for them.
#[derive(Parser, Debug)]
#[command(
    name = "bareroot",
    version,
    about,
    long_about = None,
    after_help = "Example:\n  bareroot build recipes/shell.toml     # writes out/shell, prints its digest\n  podman run --rm oci:out/shell:latest\n  bareroot closure /usr/bin/jq           # what the loader would open\n\n\
Exit status:\n  \
0    success\n  \
1    closure: a library (or the interpreter) was not found\n  \
2    an error, one line on stderr (\"bareroot: ...\"); also a usage error\n  \
run  the program's own exit status, or 128+N if signal N killed it; 2 if\n       \
bareroot fails before the program starts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One value per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an OCI image layout from a TOML recipe.
    ///
    /// Every [[binary]] brings its interpreter and library closure; the
    /// result is byte-for-byte reproducible for the same recipe, input bytes
    /// and epoch. The last line on stdout is the digest of the image (or of
    /// the index, for several platforms).
    Build(BuildArgs),
    /// Print ELF files' interpreter and transitive library closure.
    ///
    /// Resolves as glibc's ld.so does (RPATH, RUNPATH, $ORIGIN, ld.so.conf,
    /// default directories) inside a sysroot, without running anything.
    /// Exits 1 if a library is not found.
    Closure(ClosureArgs),
    /// Show an OCI image layout: platforms, digests, config and files.
    Inspect(InspectArgs),
    /// Run an image's entrypoint in its own rootfs, without a container engine.
    ///
    /// The layers are applied in order (whiteouts honoured, nothing outside
    /// the rootfs) in a temporary directory and the program runs
    /// chrooted in it (in a new user namespace when not root); a foreign
    /// platform's program runs under the toolchain's qemu-user binary inside
    /// the rootfs, so nothing is taken from the host. The exit code and
    /// output are the program's.
    Run(RunArgs),
    /// Push an OCI image layout to a registry, as one or more references.
    ///
    /// Blobs the registry already has are skipped, so an interrupted push
    /// run again sends only what is missing. Credentials come from
    /// REGISTRY_AUTH_FILE, the containers auth.json or Docker's config.json.
    Push(PushArgs),
    /// Explain why a path is in an image: the chain from a recipe entry or
    /// profile through PT_INTERP, DT_NEEDED (and how it was found) and
    /// .note.dlopen.
    ///
    /// Given a recipe, the build's own analysis is replayed; given an image
    /// layout, the image is analyzed as its own sysroot.
    Why(WhyArgs),
    /// Copy an image from a registry, an archive, a layout or a rootfs
    /// tarball into an OCI image layout (all platforms, or those named).
    ///
    /// A registry image is pulled through the same client as push: every
    /// blob checked against its digest before it is kept, credentials only
    /// to the registry's own host. Pulled blobs stay in the cache, so a
    /// later build on the same base pulls nothing.
    Pull(PullArgs),
    /// Load an OCI image layout into a container engine's image store.
    ///
    /// The image goes to the engine as a tar stream on its standard input,
    /// never as a file on disk: a docker-archive to `docker load` or
    /// `podman load`, the oci-archive to containerd's `ctr images import`
    /// (CONTAINERD_ADDRESS and CONTAINERD_SNAPSHOTTER are ctr's own, as
    /// DOCKER_HOST is docker's). The engine's answer is printed.
    Load(LoadArgs),
    /// Print a shell completion script for bareroot.
    ///
    /// bash: `source <(bareroot completions bash)`; zsh: write it as `_bareroot`
    /// in a directory on $fpath; fish: write it to
    /// ~/.config/fish/completions/bareroot.fish.
    Completions(CompletionsArgs),
    /// Print bareroot's man page (roff), or write one page per command.
    ///
    /// `bareroot man | man -l -` reads it; `--output DIR` writes bareroot.1,
    /// bareroot-build.1, … for installing under man1/.
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// An OCI image layout directory (as `bareroot build` writes).
    pub image: PathBuf,
    /// The engine: docker, podman or containerd.
    #[arg(long, value_name = "ENGINE")]
    pub into: String,
    /// Which image of a multi-platform layout [default: the host's, or the only one].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// containerd's namespace.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub namespace: String,
}

/// The shells `bareroot completions` writes scripts for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write bareroot.1 and one bareroot-COMMAND.1 per command into DIR
    /// (created if missing) instead of printing bareroot.1.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image: REGISTRY/NAME[:TAG][@DIGEST] (or docker://REF),
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE or
    /// rootfs:FILE.tar[.gz|.zst|.xz].
    pub source: String,
    /// The OCI image layout to write (replaced atomically).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: PathBuf,
    /// Only this platform (repeatable) [default: every platform; a rootfs
    /// tarball: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// Allow plain HTTP to this registry (host[:port]); loopback registries
    /// always may. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// No progress bars; print only the digest.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// A recipe (.toml) or an OCI image layout directory.
    pub target: PathBuf,
    /// The path in the image, e.g. /usr/lib/x86_64-linux-gnu/libonig.so.5.
    pub path: String,
    /// Which platform's image [default: the host's, or the only one].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Use DIR as the sysroot for PLATFORM (recipes only; repeatable).
    #[arg(long, value_name = "PLATFORM=DIR")]
    pub sysroot: Vec<String>,
    /// Build on this image instead of the recipe's `[base] image`
    /// (recipes only; as `build --base`).
    #[arg(long, value_name = "SOURCE")]
    pub base: Option<String>,
    /// Add toolchain files (a .toml file or a directory of them).
    #[arg(long, value_name = "PATH")]
    pub toolchains: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// An OCI image layout directory (as `bareroot build` writes).
    pub image: PathBuf,
    /// Where to: REGISTRY/REPOSITORY[:TAG] (repeatable).
    #[arg(required = true, value_name = "REF")]
    pub refs: Vec<String>,
    /// Allow plain HTTP to this registry (host[:port]). Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Upload blobs larger than this many bytes in chunks of it.
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    pub chunk_size: u64,
    /// After the push, write one REF@DIGEST line per reference pushed (the
    /// digest of the image or index) to FILE, replaced atomically.
    #[arg(long, value_name = "FILE")]
    pub image_refs: Option<PathBuf>,
    /// No progress bars or summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An OCI image layout directory.
    pub image: PathBuf,
    /// Which platform's image [default: the host's, or the only one].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Add toolchain files (a .toml file or a directory of them).
    #[arg(long, value_name = "PATH")]
    pub toolchains: Vec<PathBuf>,
    /// Run this program instead of the image's entrypoint (the cmd is then
    /// dropped unless arguments are given).
    #[arg(long, value_name = "PATH")]
    pub entrypoint: Option<String>,
    /// Set an environment variable for the program (repeatable), over the
    /// image's own env.
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Arguments replacing the image's cmd (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Where to write the OCI image layout [default: out/<name>, or only a
    /// temporary directory when an archive or a push is asked for].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Also write the layout as one deterministic tar (oci-archive).
    #[arg(long, value_name = "FILE")]
    pub oci_archive: Option<PathBuf>,
    /// Also write a `docker save` archive (for `docker load` / `podman
    /// load`) of the host platform's image, or the one --platform names.
    #[arg(long, value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,
    /// Layer compression: gzip[:LEVEL] (default gzip:3), zstd[:LEVEL]
    /// (default zstd:3) or none. Part of the image's identity.
    #[arg(long, value_name = "ALGO[:LEVEL]", default_value = "gzip")]
    pub compression: String,
    /// Threads to compress with [default: one per CPU]. The output is the
    /// same for every value.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Rebuild every layer even if the layer cache ($XDG_CACHE_HOME/bareroot)
    /// has it. Also: BAREROOT_NO_CACHE=1.
    #[arg(long)]
    pub no_cache: bool,
    /// Also store each platform's SBOM in the layout (and any push) as an
    /// OCI artifact whose subject is the image manifest.
    #[arg(long)]
    pub attach_sbom: bool,
    /// The platform --docker-archive and --load take from a multi-platform
    /// image.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Push the image to a registry as REF (repeatable: several tags or
    /// repositories), e.g. 127.0.0.1:5000/team/app:1.0.
    #[arg(long, value_name = "REF")]
    pub push: Vec<String>,
    /// Allow plain HTTP to this registry (host[:port]); loopback registries
    /// always may. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Upload blobs larger than this many bytes in chunks of it (--push).
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    pub chunk_size: u64,
    /// After the push, write one REF@DIGEST line per --push reference (the
    /// digest of the image or index) to FILE, replaced atomically. Needs
    /// --push.
    #[arg(long, value_name = "FILE")]
    pub image_refs: Option<PathBuf>,
    /// Timestamp for every file and for `created`, in seconds since 1970.
    /// Overrides SOURCE_DATE_EPOCH, which overrides the recipe's `epoch`.
    #[arg(long, value_name = "SECONDS")]
    pub epoch: Option<u64>,
    /// Use DIR as the sysroot for PLATFORM (repeatable), e.g. linux/amd64=/srv/root.
    #[arg(long, value_name = "PLATFORM=DIR")]
    pub sysroot: Vec<String>,
    /// Add toolchain files (a .toml file or a directory of them) to the
    /// embedded ones; a platform defined again is replaced.
    #[arg(long, value_name = "PATH")]
    pub toolchains: Vec<PathBuf>,
    /// Build on this image instead of the recipe's `[base] image` (the
    /// same sources as `bareroot pull`; relative paths from here).
    #[arg(long, value_name = "SOURCE")]
    pub base: Option<String>,
    /// Load the image into a container engine when built: docker, podman
    /// or containerd (the host platform's image, or the one --platform
    /// names); see `bareroot load`.
    #[arg(long, value_name = "ENGINE")]
    pub load: Option<String>,
    /// containerd's namespace, for --load containerd.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub namespace: String,
    /// Print nothing but the digest.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ClosureArgs {
    /// ELF files. Absolute paths are looked up inside the sysroot; relative
    /// ones on the host, from the current directory.
    #[arg(required = true, value_name = "ELF")]
    pub files: Vec<PathBuf>,
    /// Print one JSON array: {file, interpreter, libraries: [{soname, path}]} per file.
    #[arg(long)]
    pub json: bool,
    /// The platform whose loader to emulate [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Resolve inside this directory instead of the platform's default
    /// sysroot ("/" for the host; Debian's cross tree /usr/<triplet> plus the
    /// host's multiarch /usr/lib/<triplet> for others).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// Add toolchain files (a .toml file or a directory of them).
    #[arg(long, value_name = "PATH")]
    pub toolchains: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// An OCI image layout directory.
    pub image: PathBuf,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}
