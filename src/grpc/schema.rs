//! Protobuf schemas: the bundled ones, `.proto` files compiled at run time with protox, binary
//! descriptor sets, and descriptors harvested from server-reflection exchanges in the capture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use prost_types::FileDescriptorProto;

use super::memo::Memo;

/// The schemas in `proto/`, compiled by `build.rs`.
const BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundled.fds"));

/// Harvested descriptors kept at most, in bytes (a hostile capture could send endless ones).
const MAX_HARVESTED_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// protox reports file, line and column in its message.
    #[error("{0}")]
    Proto(String),
    #[error("{path}: {message}")]
    DescriptorSet { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Input and output types of one method.
#[derive(Debug, Clone)]
pub struct MethodTypes {
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Everything known about message types, looked up by method path.
#[derive(Debug, Clone)]
pub struct Schemas {
    /// `None`: only the bundled files, whose pool is parsed at its first use (a summary never
    /// needs one, and parsing is half of a run's start).
    pool: Option<DescriptorPool>,
    /// Looked up for every message: foldhash (seeded per run), not SipHash, which took about
    /// 230 instructions for a health check's path.
    methods: HashMap<String, Option<MethodTypes>, foldhash::fast::RandomState>,
    /// Harvested files whose imports have not arrived yet.
    waiting: Vec<FileDescriptorProto>,
    harvested_bytes: usize,
    harvested_files: Vec<String>,
    /// Files beyond the bundled ones: only then is a method guessed for a stream without path.
    user_files: bool,
    /// Small messages decoded with these schemas; forgotten when they change.
    pub(crate) memo: Memo,
}

impl Default for Schemas {
    fn default() -> Self {
        Self::bundled()
    }
}

impl Schemas {
    /// Only the bundled schemas (health, reflection, google.rpc, servicestatus).
    pub fn bundled() -> Self {
        Schemas::from_pool(None)
    }

    /// No schema at all: every message is decoded schema-less.
    pub fn empty() -> Self {
        Schemas::from_pool(Some(DescriptorPool::new()))
    }

    fn from_pool(pool: Option<DescriptorPool>) -> Self {
        Schemas {
            pool,
            methods: HashMap::default(),
            waiting: Vec::new(),
            harvested_bytes: 0,
            harvested_files: Vec::new(),
            user_files: false,
            memo: Memo::default(),
        }
    }

    pub fn pool(&self) -> &DescriptorPool {
        match &self.pool {
            Some(own) => own,
            None => bundled_pool(),
        }
    }

    /// The pool to add files to: the bundled one's copy, made now if not before.
    fn pool_mut(&mut self) -> &mut DescriptorPool {
        self.pool.get_or_insert_with(|| bundled_pool().clone())
    }

    /// Names of the files learned from reflection responses, in order.
    pub fn harvested_files(&self) -> &[String] {
        &self.harvested_files
    }

    /// Compiles `.proto` files (or every `.proto` below a directory) with the include paths.
    /// The directories given are include paths too, so imports relative to them resolve.
    /// Returns the full names of the services the files (and their imports) define.
    pub fn add_proto_files(
        &mut self,
        inputs: &[PathBuf],
        include_paths: &[PathBuf],
    ) -> Result<Vec<String>, SchemaError> {
        let ProtoInputs { includes, files } = ProtoInputs::of(inputs, include_paths)?;
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let mut compiler =
            protox::Compiler::new(&includes).map_err(|e| SchemaError::Proto(located(&e)))?;
        compiler.include_imports(true);
        compiler
            .open_files(files.iter().map(|f| &f.given))
            .map_err(|e| SchemaError::Proto(located(&e)))?;
        let bytes = compiler.encode_file_descriptor_set();
        self.add_descriptor_set_bytes(&bytes)
            .map_err(SchemaError::Proto)
    }

    /// A binary `FileDescriptorSet` (`protoc -o`, `buf build -o`). Returns the full names of
    /// the services it defines.
    pub fn add_descriptor_set_file(&mut self, path: &Path) -> Result<Vec<String>, SchemaError> {
        let bytes = std::fs::read(path).map_err(|source| SchemaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.add_descriptor_set_bytes(&bytes)
            .map_err(|message| SchemaError::DescriptorSet {
                path: path.display().to_string(),
                message,
            })
    }

    fn add_descriptor_set_bytes(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let set = prost_types::FileDescriptorSet::decode(bytes)
            .map_err(|e| format!("not a FileDescriptorSet: {e}"))?;
        // Also those of files known already: the set defines them too.
        let services = (set.file.iter())
            .flat_map(|f| {
                let package = f.package();
                f.service.iter().map(move |s| match package {
                    "" => s.name().to_string(),
                    p => format!("{p}.{}", s.name()),
                })
            })
            .collect();
        // Files already known (the bundled ones, well-known types) are skipped, so that a user's
        // set that includes them does not clash.
        let new: Vec<FileDescriptorProto> = set
            .file
            .into_iter()
            .filter(|f| self.pool().get_file_by_name(f.name()).is_none())
            .collect();
        self.pool_mut()
            .add_file_descriptor_protos(new)
            .map_err(|e| e.to_string())?;
        self.files_added();
        Ok(services)
    }

    /// Serialized `FileDescriptorProto`s from a reflection `file_descriptor_response`. Files whose
    /// imports are not known yet wait for them. Returns the names of the files carried that are
    /// now usable (added now or known before, as in a second pass).
    pub fn harvest(&mut self, encoded_files: &[Vec<u8>]) -> Vec<String> {
        let mut carried = Vec::new();
        for bytes in encoded_files {
            if self.harvested_bytes + bytes.len() > MAX_HARVESTED_BYTES {
                break;
            }
            self.harvested_bytes += bytes.len();
            if let Ok(file) = FileDescriptorProto::decode(bytes.as_slice()) {
                carried.push(file.name().to_string());
                let known = self.pool().get_file_by_name(file.name()).is_some()
                    || self.waiting.iter().any(|w| w.name() == file.name());
                if !known {
                    self.waiting.push(file);
                }
            }
        }
        self.settle();
        carried.retain(|name| self.pool().get_file_by_name(name).is_some());
        carried
    }

    /// Takes in what another set learnt from reflection (a worker that read part of the same
    /// capture): its harvested files, and those still waiting for imports, which this set may
    /// have.
    pub fn absorb(&mut self, other: &Schemas) {
        for name in &other.harvested_files {
            if self.pool().get_file_by_name(name).is_some()
                || self.waiting.iter().any(|w| w.name() == name)
            {
                continue;
            }
            if let Some(f) = other.pool().get_file_by_name(name) {
                self.waiting.push(f.file_descriptor_proto().clone());
            }
        }
        for f in &other.waiting {
            let known = self.pool().get_file_by_name(f.name()).is_some()
                || self.waiting.iter().any(|w| w.name() == f.name());
            if !known {
                self.waiting.push(f.clone());
            }
        }
        self.harvested_bytes = self.harvested_bytes.saturating_add(other.harvested_bytes);
        self.settle();
    }

    /// Adds the waiting files whose imports are known, until nothing more can be added.
    fn settle(&mut self) {
        let mut added = Vec::new();
        loop {
            let ready = self.waiting.iter().position(|f| {
                f.dependency
                    .iter()
                    .all(|d| self.pool().get_file_by_name(d).is_some())
            });
            let Some(i) = ready else { break };
            let file = self.waiting.swap_remove(i);
            let name = file.name().to_string();
            if self.pool_mut().add_file_descriptor_proto(file).is_ok() {
                added.push(name.clone());
                self.harvested_files.push(name);
            }
        }
        if !added.is_empty() {
            self.files_added();
        }
    }

    /// Files were added to the pool: the methods looked up and the messages decoded with the
    /// files before are forgotten, and a stream without path may now be guessed.
    fn files_added(&mut self) {
        self.methods.clear();
        self.memo.clear();
        self.user_files = true;
    }

    /// Types of the method named by a gRPC path `/pkg.Service/Method`.
    pub fn method(&mut self, path: &str) -> Option<MethodTypes> {
        if let Some(found) = self.methods.get(path) {
            return found.clone();
        }
        let found = self.lookup(path);
        // A cache of the paths seen, not of every path a capture can make up: so many, of
        // the length of real method names.
        if self.methods.len() < 100_000 && path.len() <= 512 {
            self.methods.insert(path.to_string(), found.clone());
        }
        found
    }

    fn lookup(&self, path: &str) -> Option<MethodTypes> {
        let (service, method) = path.strip_prefix('/')?.rsplit_once('/')?;
        let svc = self.pool().get_service_by_name(service)?;
        let m = svc.methods().find(|m| m.name() == method)?;
        Some(MethodTypes {
            input: m.input(),
            output: m.output(),
            client_streaming: m.is_client_streaming(),
            server_streaming: m.is_server_streaming(),
        })
    }

    /// Every method of the schemas given by the user or harvested (none with only the bundled
    /// ones), as `(path, types)`, for guessing the method of a stream without `:path`.
    pub fn user_methods(&self) -> Vec<(String, MethodTypes)> {
        if !self.user_files {
            return Vec::new();
        }
        let mut out = Vec::new();
        for svc in self.pool().services() {
            for m in svc.methods() {
                out.push((
                    format!("/{}/{}", svc.full_name(), m.name()),
                    MethodTypes {
                        input: m.input(),
                        output: m.output(),
                        client_streaming: m.is_client_streaming(),
                        server_streaming: m.is_server_streaming(),
                    },
                ));
            }
        }
        out
    }

    pub fn message(&self, full_name: &str) -> Option<MessageDescriptor> {
        self.pool().get_message_by_name(full_name)
    }
}

/// The bundled files' pool, parsed once per process: a pool is cheap to clone, its parsing is
/// not.
fn bundled_pool() -> &'static DescriptorPool {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(BUNDLED).expect("bundled descriptor set is valid"))
}

/// A protox error as `file:line:column: message`, as compilers print them.
fn located(e: &protox::Error) -> String {
    use miette::Diagnostic;
    let at = e
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let src = e.source_code()?;
            let span = src.read_span(label.inner(), 0, 0).ok()?;
            Some((span.line() + 1, span.column() + 1))
        });
    match (e.file(), at) {
        (Some(file), Some((line, col))) => format!("{file}:{line}:{col}: {e}"),
        (Some(file), None) if !e.to_string().contains(file) => format!("{file}: {e}"),
        _ => e.to_string(),
    }
}

/// What `.proto` files and directories given on the command line compile from.
#[derive(Debug)]
pub struct ProtoInputs {
    /// The include paths given, every directory given, and the directory of every file given,
    /// each once: imports relative to them resolve.
    pub includes: Vec<PathBuf>,
    pub files: Vec<ProtoFile>,
}

#[derive(Debug)]
pub struct ProtoFile {
    /// As given (a file), or relative to its directory (a file below one).
    pub given: PathBuf,
    /// Relative to the include path it lies in, as tools that take include paths name it.
    pub name: PathBuf,
}

impl ProtoInputs {
    pub fn of(inputs: &[PathBuf], include_paths: &[PathBuf]) -> Result<Self, SchemaError> {
        let mut includes: Vec<PathBuf> = Vec::new();
        let mut include = |dir: &Path| {
            if !includes.iter().any(|i| i == dir) {
                includes.push(dir.to_path_buf());
            }
        };
        include_paths.iter().for_each(|d| include(d));
        // Each file, and whether it was found below a directory given.
        let mut found: Vec<(PathBuf, bool)> = Vec::new();
        for input in inputs {
            if input.is_dir() {
                include(input);
                let below = protos_below(input).map_err(|source| SchemaError::Io {
                    path: input.display().to_string(),
                    source,
                })?;
                found.extend(below.into_iter().map(|name| (input.join(name), true)));
            } else {
                if !input.exists() {
                    return Err(SchemaError::Io {
                        path: input.display().to_string(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    });
                }
                if let Some(parent) = input.parent() {
                    include(if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    });
                }
                found.push((input.clone(), false));
            }
        }
        let files = (found.into_iter())
            .map(|(path, below_dir)| {
                if below_dir {
                    let name = deepest_name(&path, &includes);
                    ProtoFile {
                        given: name.clone(),
                        name,
                    }
                } else {
                    // A file given is named relative to the first include path it lies in, as
                    // protoc and protox (which compiles it) name it: `-I proto proto/a/b.proto`
                    // is `a/b.proto`, the name another file imports it by.
                    let input = lexical(&path);
                    let name = (includes.iter())
                        .find_map(|dir| input.strip_prefix(lexical(dir)).ok())
                        .map_or_else(|| path.clone(), Path::to_path_buf);
                    ProtoFile { given: path, name }
                }
            })
            .collect();
        Ok(ProtoInputs { includes, files })
    }
}

/// The name of a file found below a directory given: relative to the deepest include path
/// that holds it, as long as that name leads back to this file through the include paths in
/// their order. So `--proto protos -I protos/third_party` compiles
/// `protos/third_party/google/api/http.proto` once, as `google/api/http.proto`, the name the
/// other files import it by, where naming it relative to `protos` would define everything in
/// it twice.
fn deepest_name(path: &Path, includes: &[PathBuf]) -> PathBuf {
    let file = lexical(path);
    let first_holding = |name: &Path| {
        (includes.iter())
            .map(|dir| lexical(dir).join(name))
            .find(|candidate| candidate.is_file())
    };
    let mut holding: Vec<(usize, PathBuf)> = (includes.iter())
        .filter_map(|dir| {
            let dir = lexical(dir);
            let name = file.strip_prefix(&dir).ok()?.to_path_buf();
            Some((dir.components().count(), name))
        })
        .collect();
    holding.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    (holding.iter())
        .find(|(_, name)| first_holding(name).is_some_and(|found| found == file))
        .or(holding.last())
        .map_or_else(|| path.to_path_buf(), |(_, name)| name.clone())
}

/// `p` without its `.` components, as protox compares paths.
fn lexical(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect()
}

/// The `.proto` files below `root`, named relative to it (it is an include path, so imports
/// match), as [`Schemas::add_proto_files`] compiles them.
pub fn protos_below(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect_protos(root, root, 0, &mut out)?;
    Ok(out)
}

/// Links to directories are followed, but not deeper than this: a link loop ends.
const MAX_PROTO_DEPTH: usize = 32;

fn collect_protos(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            if depth < MAX_PROTO_DEPTH {
                collect_protos(root, &p, depth + 1, out)?;
            }
        } else if p.extension().is_some_and(|x| x == "proto") {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_schemas_know_health_reflection_and_status() {
        let mut s = Schemas::bundled();
        let check = s.method("/grpc.health.v1.Health/Check").unwrap();
        assert_eq!(check.input.full_name(), "grpc.health.v1.HealthCheckRequest");
        assert!(
            s.method("/grpc.health.v1.Health/Watch")
                .unwrap()
                .server_streaming
        );
        let refl = s
            .method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
            .unwrap();
        assert!(refl.client_streaming && refl.server_streaming);
        assert!(s
            .method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
            .is_some());
        assert!(s.method("/servicestatus.HealthCheck/Status").is_some());
        assert!(s.message("google.rpc.Status").is_some());
        assert!(s.message("google.rpc.ErrorInfo").is_some());
        assert!(s.method("/nope.Svc/M").is_none());
        assert!(s.method("garbage").is_none());
    }

    fn dep_and_main() -> (FileDescriptorProto, FileDescriptorProto) {
        let dep = FileDescriptorProto {
            name: Some("dep.proto".into()),
            package: Some("d".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("D".into()),
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        let main = FileDescriptorProto {
            name: Some("main.proto".into()),
            package: Some("m".into()),
            dependency: vec!["dep.proto".into()],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        (dep, main)
    }

    const DEP: &str = "syntax = \"proto3\"; package d; message D { string s = 1; }";

    /// A fresh directory holding these files (paths relative to it) and their directories.
    fn proto_tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("h2scope-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// A directory's files are named relative to it, also in its subdirectories, so that
    /// imports written relative to it resolve.
    #[test]
    fn proto_directories_name_nested_files_from_their_top() {
        let dir = proto_tree(
            "protos",
            &[
                ("a/b/dep.proto", DEP),
                (
                    "main.proto",
                    "syntax = \"proto3\"; package m; import \"a/b/dep.proto\"; \
                     message M { d.D d = 1; } service S { rpc Get(M) returns (d.D); }",
                ),
            ],
        );
        assert_eq!(
            protos_below(&dir).unwrap(),
            [PathBuf::from("a/b/dep.proto"), PathBuf::from("main.proto")]
        );
        let mut s = Schemas::bundled();
        s.add_proto_files(std::slice::from_ref(&dir), &[]).unwrap();
        assert_eq!(s.method("/m.S/Get").unwrap().output.full_name(), "d.D");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Files given one by one are named as protox names them when it compiles them: relative
    /// to the first include path they lie in, else to their own directory.
    #[test]
    fn proto_files_are_named_as_protox_names_them() {
        let dir = proto_tree(
            "named",
            &[
                ("proto/a/b/dep.proto", DEP),
                (
                    "proto/main.proto",
                    "syntax = \"proto3\"; package m; import \"a/b/dep.proto\"; \
                     service S { rpc Get(d.D) returns (d.D); }",
                ),
                (
                    "other/lone.proto",
                    "syntax = \"proto3\"; package l; message L {}",
                ),
            ],
        );
        let inputs = [
            dir.join("proto/main.proto"),
            dir.join("proto/./a/b/dep.proto"),
            dir.join("other/lone.proto"),
        ];
        let includes = [dir.join("proto")];
        let ours = ProtoInputs::of(&inputs, &includes).unwrap();
        let names: Vec<&Path> = ours.files.iter().map(|f| f.name.as_path()).collect();
        assert_eq!(
            names,
            [
                Path::new("main.proto"),
                Path::new("a/b/dep.proto"),
                Path::new("lone.proto")
            ]
        );
        let mut compiler = protox::Compiler::new(&ours.includes).unwrap();
        compiler.open_files(&inputs).unwrap();
        let mut theirs: Vec<String> = (compiler.files())
            .filter(|f| !f.is_import())
            .map(|f| f.name().to_string())
            .collect();
        let mut ours: Vec<String> = names.iter().map(|n| n.display().to_string()).collect();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A vendored tree below a directory given, and given again as an include path (the way
    /// `third_party/` is mostly laid out), is compiled once, under the names it is imported by.
    #[test]
    fn vendored_include_below_a_proto_directory_is_compiled_once() {
        let dir = proto_tree(
            "vendored",
            &[
                (
                    "protos/third_party/vendor/types/money.proto",
                    "syntax = \"proto3\"; package vendor.types; message Money { int64 units = 1; }",
                ),
                (
                    "protos/api/shop.proto",
                    "syntax = \"proto3\"; package shop; import \"vendor/types/money.proto\"; \
                     service Till { rpc Pay(vendor.types.Money) returns (vendor.types.Money); }",
                ),
            ],
        );
        let inputs = [dir.join("protos")];
        let includes = [dir.join("protos/third_party")];
        let named = ProtoInputs::of(&inputs, &includes).unwrap();
        let names: Vec<&Path> = named.files.iter().map(|f| f.name.as_path()).collect();
        assert_eq!(
            names,
            [
                Path::new("api/shop.proto"),
                Path::new("vendor/types/money.proto")
            ]
        );
        let mut s = Schemas::empty();
        let services = s.add_proto_files(&inputs, &includes).unwrap();
        assert_eq!(services, ["shop.Till"]);
        assert!(s.method("/shop.Till/Pay").is_some());
        // Without the include path, both are named below the directory and import each other
        // by those names, as before.
        let alone = ProtoInputs::of(&inputs, &[]).unwrap();
        let names: Vec<&Path> = alone.files.iter().map(|f| f.name.as_path()).collect();
        assert_eq!(
            names,
            [
                Path::new("api/shop.proto"),
                Path::new("third_party/vendor/types/money.proto")
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn harvest_waits_for_imports() {
        let mut s = Schemas::empty();
        let (dep, main) = dep_and_main();
        assert!(s.harvest(&[main.encode_to_vec()]).is_empty());
        // Messages decoded so far are forgotten once files are added.
        let health = Schemas::bundled()
            .message("grpc.health.v1.HealthCheckRequest")
            .unwrap();
        let found = crate::grpc::memo::Remembered {
            type_name: health.full_name().into(),
            json: None,
        };
        s.memo.put(&health, b"", &found);
        assert!(s.memo.get(&health, b"").is_some());
        assert_eq!(
            s.harvest(&[dep.encode_to_vec()]),
            vec!["dep.proto".to_string()]
        );
        assert!(s.memo.get(&health, b"").is_none());
        assert_eq!(s.harvested_files(), ["dep.proto", "main.proto"]);
        // Known already (a second pass): still reported as carried.
        assert_eq!(
            s.harvest(&[main.encode_to_vec()]),
            vec!["main.proto".to_string()]
        );
        assert!(s.message("d.D").is_some());
    }

    /// Two threads of one capture: one saw the file, the other its import. Together they have
    /// both.
    #[test]
    fn absorb_joins_what_workers_harvested() {
        let (dep, main) = dep_and_main();
        let mut a = Schemas::empty();
        assert!(a.harvest(&[main.encode_to_vec()]).is_empty());
        let mut b = Schemas::empty();
        b.harvest(&[dep.encode_to_vec()]);
        let mut all = Schemas::empty();
        all.absorb(&a);
        assert!(all.message("d.D").is_none());
        all.absorb(&b);
        assert_eq!(all.harvested_files(), ["dep.proto", "main.proto"]);
        assert!(all.message("d.D").is_some());
        // Again: nothing new, nothing twice.
        all.absorb(&b);
        assert_eq!(all.harvested_files().len(), 2);
    }
}
