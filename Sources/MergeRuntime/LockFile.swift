import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A lock file: exactly what a merge is made from, and what it wrote.
///
/// `merge lock RECIPE` writes it beside the recipe (`recipe.lock` for `recipe.yml`); `merge run`
/// adds the output's files; `merge run --locked` refuses inputs that differ; `merge verify`
/// re-hashes an output against it. JSON, one entry per line, sorted: a change shows as a small
/// diff. It names the tool, the seed, the recipe (the SHA-256 of ``RecipeDigest``), every source
/// as resolved (a path as written, or a Hub repository with its commit), and the size and
/// SHA-256 of every file the merge reads: config, index, weights, tokenizer files, adapters.
public struct MergeLock: Sendable, Equatable {
  /// A file and its content.
  public struct File: Sendable, Equatable {
    /// Its name in the lock: a path as the recipe writes it, `hub:owner/name@commit/file`, or
    /// a file of the output.
    public var name: String
    public var size: Int
    public var sha256: String
  }

  /// A model as the recipe names it and as it was resolved.
  public struct Source: Sendable, Equatable {
    /// As written.
    public var model: String
    /// A folder (as written) or `hub:owner/name`.
    public var resolved: String
    /// The Hub commit, for a repository.
    public var commit: String?
  }

  /// The format's version.
  public static let formatVersion = 1

  public var tool: String
  public var seed: UInt64
  /// The SHA-256 of the normalized recipe.
  public var recipe: String
  public var sources: [Source]
  public var inputs: [File]
  /// The output's files, once a run wrote them.
  public var outputs: [File]

  /// The lock file of the recipe at `path`: `.yml`/`.yaml` replaced by `.lock`.
  public static func path(ofRecipe path: String) -> String {
    for suffix in [".yml", ".yaml"] where path.hasSuffix(suffix) {
      return String(path.dropLast(suffix.count)) + ".lock"
    }
    return path + ".lock"
  }

  /// The SHA-256 of recipe `text` normalized (of the text itself when it is not YAML).
  public static func recipeDigest(_ text: String) -> String {
    SHA256.hex(Array((RecipeDigest.normalized(text) ?? text).utf8))
  }

  // MARK: Making one

  /// The lock of `merge`, compiled from `recipeText`, its input files hashed on up to
  /// `threads` threads (a file that the Hub cache names by its SHA-256 is not read).
  ///
  /// - Throws: `ModelError` for a file that cannot be read, or a model on the Hub that is not
  ///   downloaded yet.
  public static func make(
    _ merge: CompiledMerge, recipeText: String, threads: Int
  ) throws(ModelError) -> MergeLock {
    var sources: [Source] = []
    var files: [(name: String, path: String)] = []
    for model in merge.inputModels {
      if let remote = model.folder.remote {
        throw .notCached(
          repository: remote.repository.value,
          reason:
            "it is not downloaded yet; 'merge run' downloads it (a lock names files by content)")
      }
      let written = model.reference.model.path.value
      var prefix = written
      var source = Source(model: model.reference.description, resolved: written, commit: nil)
      if let repository = model.hubRepository {
        let commit = model.path.split(separator: "/").last.map(String.init) ?? ""
        source.resolved = "hub:\(repository.value)"
        source.commit = commit
        prefix = "hub:\(repository.value)@\(commit)"
      }
      sources.append(source)
      for name in Set(model.folder.definingFiles + model.folder.sideFiles()) {
        files.append((prefix + "/" + name, FileSystem.join(model.path, name)))
      }
      if let source = model.taskVector, let lora = model.reference.lora {
        for name in [TaskVectorManifest.manifestName, TaskVectorManifest.weightsName] {
          files.append((lora.path.value + "/" + name, FileSystem.join(source.path, name)))
        }
      }
      if let adapter = model.adapter, let lora = model.reference.lora {
        var adapterNames = [LoraAdapter.configFileName]
        for file in adapter.weights.files {
          adapterNames.append(file.path.split(separator: "/").last.map(String.init) ?? file.path)
        }
        for name in Set(adapterNames) {
          files.append((lora.path.value + "/" + name, FileSystem.join(adapter.path, name)))
        }
      }
    }
    files.sort { $0.name < $1.name }
    var unique: [(name: String, path: String)] = []
    for f in files where unique.last?.name != f.name { unique.append(f) }
    let hashed = try hash(unique.map(\.path), threads: threads)
    let inputs = zip(unique, hashed).map {
      File(name: $0.0.name, size: $0.1.size, sha256: $0.1.sha256)
    }
    return MergeLock(
      tool: Tool.description, seed: merge.seed, recipe: recipeDigest(recipeText),
      sources: sources.sorted { $0.model < $1.model }, inputs: inputs, outputs: [])
  }

  /// The files of the output folder `folder`, hashed.
  public static func outputs(of folder: String, threads: Int) throws(ModelError) -> [File] {
    let names = try FileSystem.contents(of: folder).sorted()
    let hashed = try hash(names.map { FileSystem.join(folder, $0) }, threads: threads)
    return zip(names, hashed).map { File(name: $0.0, size: $0.1.size, sha256: $0.1.sha256) }
  }

  /// Each file's size and SHA-256, several files at once.
  static func hash(_ paths: [String], threads: Int) throws(ModelError) -> [(
    size: Int, sha256: String
  )] {
    let results = Mutex(
      [Result<(size: Int, sha256: String), ModelError>?](
        repeating: nil, count: paths.count))
    let next = Atomic<Int>(0)
    let workers = max(1, min(threads, paths.count))
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
      while true {
        let i = next.add(1, ordering: .relaxed).oldValue
        guard i < paths.count else { return }
        let result = Result { () throws(ModelError) in try SHA256.content(of: paths[i]) }
        results.withLock { $0[i] = result }
      }
    }
    var out: [(size: Int, sha256: String)] = []
    for r in results.withLock({ $0 }) {
      switch r {
      case .success(let v)?: out.append(v)
      case .failure(let e)?: throw e
      case nil: throw .io(path: "", call: "hash", errno: 0)
      }
    }
    return out
  }

  // MARK: Comparing

  /// The first way `current` (what the merge would read now) differs from this lock, as a
  /// sentence naming the file and both hashes; nil when the inputs are the ones locked.
  public func mismatch(_ current: MergeLock) -> String? {
    if recipe != current.recipe {
      return "the recipe changed: its digest is \(current.recipe), the lock has \(recipe)"
    }
    if seed != current.seed { return "the seed is \(current.seed), the lock has \(seed)" }
    if sources != current.sources {
      for (a, b) in zip(sources, current.sources) where a != b {
        return
          "'\(b.model)' resolves to \(b.resolved)\(b.commit.map { "@" + $0 } ?? ""), the lock has \(a.resolved)\(a.commit.map { "@" + $0 } ?? "")"
      }
      return "the recipe reads other models than the lock names"
    }
    let locked = Dictionary(inputs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for file in current.inputs {
      guard let old = locked[file.name] else {
        return "\(file.name) is read but not in the lock"
      }
      if old.sha256 != file.sha256 || old.size != file.size {
        return
          "\(file.name) differs: SHA-256 \(file.sha256) (\(file.size) bytes), the lock has \(old.sha256) (\(old.size) bytes)"
      }
    }
    let read = Set(current.inputs.map(\.name))
    if let missing = inputs.first(where: { !read.contains($0.name) }) {
      return "\(missing.name) is in the lock but no longer read"
    }
    if tool != current.tool {
      return "the lock was made by \(tool), this is \(current.tool) (its output may differ)"
    }
    return nil
  }

  /// The first file of `found` (an output folder's files) that differs from the lock's
  /// outputs, as a sentence; nil when they are the same.
  public func outputMismatch(_ found: [File]) -> String? {
    Self.mismatch(expected: outputs, found: found)
  }

  /// The first file of `found` that differs from `expected`, is missing from it or is not in
  /// it, as a sentence ("the lock" names `expected`); nil when they are the same files.
  public static func mismatch(expected outputs: [File], found: [File]) -> String? {
    let seen = Dictionary(found.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for file in outputs {
      guard let f = seen[file.name] else { return "\(file.name) is missing" }
      if f.sha256 != file.sha256 || f.size != file.size {
        return
          "\(file.name) differs: SHA-256 \(f.sha256) (\(f.size) bytes), the lock has \(file.sha256) (\(file.size) bytes)"
      }
    }
    let locked = Set(outputs.map(\.name))
    if let extra = found.first(where: { !locked.contains($0.name) }) {
      return "\(extra.name) is not in the lock"
    }
    return nil
  }

  /// The SHA-256 of everything but the outputs: what an output's provenance names the lock by.
  public var inputDigest: String {
    var copy = self
    copy.outputs = []
    return SHA256.hex(Array(copy.text.utf8))
  }

  // MARK: Text

  /// The file's text.
  public var text: String {
    func file(_ f: File) -> JSONValue {
      .object([
        ("file", .string(f.name)), ("size", .integer(f.size)), ("sha256", .string(f.sha256)),
      ])
    }
    let json = JSONValue.object([
      ("lock", .integer(Self.formatVersion)),
      ("tool", .string(tool)),
      ("seed", .number(String(seed))),
      ("recipe_sha256", .string(recipe)),
      (
        "sources",
        .array(
          sources.map { s in
            var members: [(String, JSONValue)] = [
              ("model", .string(s.model)), ("resolved", .string(s.resolved)),
            ]
            if let commit = s.commit { members.append(("commit", .string(commit))) }
            return .object(members)
          })
      ),
      ("inputs", .array(inputs.map(file))),
      ("outputs", .array(outputs.map(file))),
    ])
    return json.formatted() + "\n"
  }

  /// Reads the lock at `path`.
  ///
  /// - Throws: `ModelError` when it cannot be read or is not a lock of this format.
  public init(path: String) throws(ModelError) {
    let bytes = try FileSystem.read(path, limit: 256 << 20)
    func bad(_ reason: String) -> ModelError { .badLock(path: path, reason: reason) }
    let json: JSONValue
    do {
      json = try JSONValue.parse(bytes)
    } catch {
      throw bad("it is not JSON (\(error))")
    }
    guard json["lock"]?.intValue == Self.formatVersion else {
      throw bad("it is not a lock of format \(Self.formatVersion)")
    }
    func files(_ key: String) throws(ModelError) -> [File] {
      var out: [File] = []
      for entry in json[key]?.arrayValue ?? [] {
        guard let name = entry["file"]?.stringValue, let size = entry["size"]?.intValue,
          let sha = entry["sha256"]?.stringValue
        else { throw bad("an entry of '\(key)' lacks file, size or sha256") }
        out.append(File(name: name, size: size, sha256: sha))
      }
      return out
    }
    guard let tool = json["tool"]?.stringValue, let recipe = json["recipe_sha256"]?.stringValue,
      case .number(let seedText)? = json["seed"], let seed = UInt64(seedText)
    else { throw bad("it lacks tool, seed or recipe_sha256") }
    var sources: [Source] = []
    for s in json["sources"]?.arrayValue ?? [] {
      guard let model = s["model"]?.stringValue, let resolved = s["resolved"]?.stringValue else {
        throw bad("a source lacks model or resolved")
      }
      sources.append(Source(model: model, resolved: resolved, commit: s["commit"]?.stringValue))
    }
    self.init(
      tool: tool, seed: seed, recipe: recipe, sources: sources, inputs: try files("inputs"),
      outputs: try files("outputs"))
  }

  public init(
    tool: String, seed: UInt64, recipe: String, sources: [Source], inputs: [File],
    outputs: [File]
  ) {
    self.tool = tool
    self.seed = seed
    self.recipe = recipe
    self.sources = sources
    self.inputs = inputs
    self.outputs = outputs
  }

  /// Writes the lock to `path` (a temporary file renamed into place).
  public func write(to path: String) throws(ModelError) {
    try FileSystem.replace(path, bytes: Array(text.utf8))
  }
}
