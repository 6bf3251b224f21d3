import Dispatch
import MergeCompiler
import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// One of N parts of a merge (`merge run --partition I/N`), run by a process of its own.
///
/// The output's shards are laid out exactly as for a single run, then dealt to the N
/// partitions by bytes (largest first, each to the partition with the fewest bytes so far), so
/// partitions take about equal time. Partition I computes only the tensors of its shards and
/// writes them, with a manifest, into the folder `OUTPUT/partition-I-of-N` (built beside it and
/// renamed into place when complete); partition 0 also writes the side files (config.json,
/// tokenizer, index, model card, recipe). No process coordinates them: `merge assemble OUTPUT`
/// checks that all N are there and agree, and moves their files into the model folder in one
/// atomic step.
public struct Partition: Sendable, Equatable {
  /// Which partition, from 0.
  public var index: Int
  /// How many.
  public var count: Int

  public init(index: Int, count: Int) {
    self.index = index
    self.count = count
  }

  /// `I/N` with 0 ≤ I < N ≤ 10,000.
  public init?(parsing text: String) {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 10_000,
      i >= 0, i < n
    else { return nil }
    self.init(index: i, count: n)
  }

  /// The partition's folder inside the output folder.
  public var folderName: String { "\(OutputFolder.partitionPrefix)\(index)-of-\(count)" }

  /// This partition of `merge`: the merge with only the output tensors of its shards, and the
  /// layout with only those shards (names, headers and offsets as in `layout`).
  public func part(of merge: CompiledMerge, layout: ShardLayout) -> (CompiledMerge, ShardLayout) {
    let written = layout.restricted(to: Self.assign(layout, count: count)[index])
    let names = Set(written.shards.flatMap { $0.tensors.map(\.name) })
    var part = merge
    part.graphs = merge.graphs.filter { names.contains($0.plan.name) }
    return (part, written)
  }

  /// Which shards of `layout` each of `count` partitions writes (each list ascending).
  public static func assign(_ layout: ShardLayout, count: Int) -> [[Int]] {
    var bytes = [Int](repeating: 0, count: count)
    var shards = [[Int]](repeating: [], count: count)
    let order = layout.shards.indices.sorted {
      (layout.shards[$0].fileSize, -$0) > (layout.shards[$1].fileSize, -$1)
    }
    for s in order {
      let p = bytes.indices.min { (bytes[$0], $0) < (bytes[$1], $1) } ?? 0
      bytes[p] += layout.shards[s].fileSize
      shards[p].append(s)
    }
    return shards.map { $0.sorted() }
  }
}

/// What a finished partition wrote (`partition.json` in its folder).
struct PartitionManifest {
  var tool: String
  var recipeDigest: String
  var seed: UInt64
  var index: Int
  var count: Int
  /// Every shard of the whole output with its size, in order.
  var shards: [(name: String, size: Int)]
  /// The shards this partition wrote.
  var mine: [String]
  /// The other files it wrote (partition 0 only), with their sizes.
  var sideFiles: [(name: String, size: Int)]

  var text: String {
    func files(_ list: [(name: String, size: Int)]) -> JSONValue {
      .array(list.map { .object([("name", .string($0.name)), ("size", .integer($0.size))]) })
    }
    return JSONValue.object([
      ("tool", .string(tool)), ("recipe_sha256", .string(recipeDigest)),
      ("seed", .number(String(seed))), ("partition", .integer(index)),
      ("partitions", .integer(count)), ("shards", files(shards)),
      ("written", .array(mine.map { .string($0) })), ("side_files", files(sideFiles)),
    ]).formatted() + "\n"
  }

  init(
    tool: String, recipeDigest: String, seed: UInt64, index: Int, count: Int,
    shards: [(name: String, size: Int)], mine: [String], sideFiles: [(name: String, size: Int)]
  ) {
    self.tool = tool
    self.recipeDigest = recipeDigest
    self.seed = seed
    self.index = index
    self.count = count
    self.shards = shards
    self.mine = mine
    self.sideFiles = sideFiles
  }

  init(path: String) throws(ModelError) {
    let bytes = try FileSystem.read(path, limit: 16 << 20)
    func bad(_ reason: String) -> ModelError {
      .outputRefused(path: path, reason: "not a partition manifest merge can read: \(reason)")
    }
    guard let text = String(validating: bytes, as: UTF8.self),
      let json = try? JSONValue.parse(text)
    else { throw bad("not JSON") }
    func files(_ key: String) throws(ModelError) -> [(name: String, size: Int)] {
      guard let list = json[key]?.arrayValue else { throw bad("no '\(key)'") }
      var out: [(name: String, size: Int)] = []
      for item in list {
        guard let name = item["name"]?.stringValue, let size = item["size"]?.intValue,
          !name.contains("/"), size >= 0
        else { throw bad("an entry of '\(key)'") }
        out.append((name, size))
      }
      return out
    }
    guard let tool = json["tool"]?.stringValue, let digest = json["recipe_sha256"]?.stringValue,
      case .number(let seedText)? = json["seed"], let seed = UInt64(seedText),
      let index = json["partition"]?.intValue, let count = json["partitions"]?.intValue,
      let written = json["written"]?.arrayValue
    else { throw bad("a field is missing") }
    self.init(
      tool: tool, recipeDigest: digest, seed: seed, index: index, count: count,
      shards: try files("shards"), mine: written.compactMap(\.stringValue),
      sideFiles: try files("side_files"))
  }
}

extension MergeRunner {
  /// Runs partition `partition` of `merge` into `output` (see ``Partition``).
  static func runPartition(
    _ merge: CompiledMerge, output: String, options: RunOptions, partition: Partition
  ) throws(RunError) -> RunSummary {
    let start = DispatchTime.now().uptimeNanoseconds
    releaseFreedMemory()
    let layout = Self.layout(merge.plan, options: options)
    let (part, written) = partition.part(of: merge, layout: layout)
    let folder: OutputFolder
    let writer: SafetensorsWriter
    do {
      try requireOutsideInputs(output, merge.inputModels)
      try Self.preparePartitionFolder(output)
      folder = try OutputFolder(
        destination: FileSystem.join(output, partition.folderName),
        existing: options.replaceExisting ? .replacePartitions : .refuse)
      writer = try SafetensorsWriter(folder: folder, layout: written)
    } catch {
      throw .model(error)
    }
    do {
      try computeTensors(part, layout: written, writer: writer, options: options, start: start)
      try writer.finish(writingIndex: false)
      var side: [(name: String, size: Int)] = []
      if partition.index == 0 {
        var files = Self.sideFiles(
          merge.plan, recipeText: merge.recipeText, seed: merge.seed, layout: layout,
          contents: options.contents)
        if layout.shards.count > 1 {
          files.append((ModelFolder.indexFileName, .bytes(Array(layout.indexJSON().utf8))))
        }
        try write(files, to: folder)
        for (name, _) in files {
          side.append((name, try FileSystem.size(of: folder.path(of: name))))
        }
      }
      let manifest = PartitionManifest(
        tool: Tool.description, recipeDigest: MergeLock.recipeDigest(merge.recipeText),
        seed: merge.seed, index: partition.index, count: partition.count,
        shards: layout.shards.map { ($0.fileName, $0.fileSize) },
        mine: written.shards.map(\.fileName), sideFiles: side)
      try folder.write(OutputFolder.partitionManifest, bytes: Array(manifest.text.utf8))
      try folder.commit()
    } catch let error as RunError {
      folder.discard()
      throw error
    } catch let error as ModelError {
      folder.discard()
      throw .model(error)
    } catch {
      folder.discard()
      throw .execution(ExecutionError(tensor: "", reason: "\(error)"))
    }
    return RunSummary(
      tensorCount: part.graphs.count, shardCount: written.shards.count,
      bytesWritten: written.totalFileSize,
      seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
  }

  /// Creates the output folder partitions are written into, or checks that the one there holds
  /// only partitions.
  static func preparePartitionFolder(_ output: String) throws(ModelError) {
    switch FileSystem.kind(of: output) {
    case .missing:
      // Other partitions may create it at the same moment.
      guard mkdir(output, 0o755) == 0 || errno == EEXIST else {
        throw .io(path: output, call: "mkdir", errno: errno)
      }
    case .directory: break
    default: throw .outputRefused(path: output, reason: "it exists and is not a folder")
    }
    let names = try FileSystem.contents(of: output)
    if names.contains(OutputFolder.marker) {
      throw .outputRefused(
        path: output, reason: "it holds a merge output (already assembled?): choose another folder")
    }
    let foreign = names.filter {
      !$0.hasPrefix(OutputFolder.partitionPrefix)
        && !$0.hasPrefix("." + OutputFolder.partitionPrefix)
    }
    if let name = foreign.sorted().first {
      throw .outputRefused(
        path: output,
        reason:
          "it holds '\(name)', which no partition wrote; partitions go into an empty or new folder")
    }
  }
}

/// `merge assemble OUTPUT`: the partitions in OUTPUT made into the model folder a single run
/// writes.
public enum Assembly {
  /// What was assembled.
  public struct Summary: Sendable {
    public var partitions: Int
    public var shards: Int
    public var bytes: Int
  }

  /// Checks that every partition of `output` is present, finished and of the same merge, then
  /// replaces `output` with the model folder, in one rename.
  ///
  /// - Throws: `ModelError.outputRefused` naming the first partition that is missing,
  ///   unfinished or different, or a file that is missing or has another size.
  public static func assemble(_ output: String) throws(ModelError) -> Summary {
    guard FileSystem.kind(of: output) == .directory else { throw .notFound(path: output) }
    let names = try FileSystem.contents(of: output)
    if names.contains(OutputFolder.marker) {
      throw .outputRefused(path: output, reason: "it is already a merge output")
    }
    // The partitions finished, by the manifests found.
    var manifests: [Int: PartitionManifest] = [:]
    var counts = Set<Int>()
    for name in names where name.hasPrefix(OutputFolder.partitionPrefix) {
      let path = FileSystem.join(FileSystem.join(output, name), OutputFolder.partitionManifest)
      guard FileSystem.kind(of: path) == .file else { continue }
      let m = try PartitionManifest(path: path)
      guard name == Partition(index: m.index, count: m.count).folderName else {
        throw .outputRefused(path: path, reason: "it names partition \(m.index)/\(m.count)")
      }
      manifests[m.index] = manifests[m.index] ?? m
      counts.insert(m.count)
    }
    guard let count = counts.first else {
      throw .outputRefused(
        path: output, reason: "it holds no finished partition (merge run --partition I/N)")
    }
    guard counts.count == 1 else {
      throw .outputRefused(
        path: output,
        reason: "it holds partitions of different splits (\(counts.sorted().map { "of \($0)" }))")
    }
    for i in 0..<count where manifests[i] == nil {
      let name = Partition(index: i, count: count).folderName
      let running = names.contains { $0.hasPrefix(".\(name).partial-") }
      throw .outputRefused(
        path: output,
        reason:
          "partition \(i)/\(count) is \(running ? "not finished (its folder is still being written)" : "missing") (no \(name)/\(OutputFolder.partitionManifest))"
      )
    }
    let ordered = (0..<count).compactMap { manifests[$0] }
    guard let first = ordered.first, ordered.count == count else {
      throw .outputRefused(path: output, reason: "a partition is missing")
    }
    var owner: [String: Int] = [:]
    for (i, m) in ordered.enumerated() {
      let where_ = "partition \(i)/\(count)"
      guard m.recipeDigest == first.recipeDigest, m.seed == first.seed,
        m.shards.map(\.name) == first.shards.map(\.name),
        m.shards.map(\.size) == first.shards.map(\.size)
      else {
        throw .outputRefused(
          path: output, reason: "\(where_) is of another merge (recipe, seed or layout differ)")
      }
      for s in m.mine {
        if let other = owner[s] {
          throw .outputRefused(
            path: output, reason: "\(s) is written by partitions \(other) and \(i)")
        }
        owner[s] = i
      }
    }
    if let missing = first.shards.first(where: { owner[$0.name] == nil }) {
      throw .outputRefused(path: output, reason: "no partition wrote \(missing.name)")
    }
    // Every file there, at its size.
    var files: [(source: String, name: String)] = []
    for (name, size) in first.shards + first.sideFiles {
      let i = first.sideFiles.contains { $0.name == name } ? 0 : owner[name] ?? 0
      let source = FileSystem.join(
        FileSystem.join(output, Partition(index: i, count: count).folderName), name)
      guard let actual = try? FileSystem.size(of: source), actual == size else {
        throw .outputRefused(
          path: output,
          reason:
            "partition \(i)/\(count) is incomplete: \(source) is missing or not \(size) bytes")
      }
      files.append((source, name))
    }
    // The model folder, built beside OUTPUT from links to the partitions' files, then swapped
    // with it; the partitions' folders go with the old OUTPUT.
    let folder = try OutputFolder(destination: output, existing: .replacePartitions)
    do throws(ModelError) {
      for (source, name) in files {
        let target = folder.path(of: name)
        if link(source, target) != 0 {
          try FileSystem.copy(source, to: target, limit: Int.max)
        }
      }
      try folder.commit()
    } catch {
      folder.discard()
      throw error
    }
    return Summary(
      partitions: count, shards: first.shards.count,
      bytes: first.shards.reduce(0) { $0 + $1.size })
  }
}

extension MergeCost {
  /// The cost of each of `count` partitions of `merge` (`merge plan --partitions N`), each
  /// priced as the run that computes it: its tensors, its shards, partition 0's side files.
  public static func partitions(
    _ count: Int, of merge: CompiledMerge, options: RunOptions, constants: CostConstants,
    baselineBytes: Int, startupSeconds: Double
  ) -> [MergeCost] {
    let layout = MergeRunner.layout(merge.plan, options: options)
    let side = MergeRunner.sideFileBytes(
      merge.plan, recipeText: merge.recipeText, seed: merge.seed, layout: layout,
      contents: options.contents)
    return (0..<count).map { i in
      let (part, written) = Partition(index: i, count: count).part(of: merge, layout: layout)
      return estimate(
        part, layout: written, outputFiles: i == 0 ? side : 0, options: options,
        constants: constants, baselineBytes: baselineBytes, startupSeconds: startupSeconds)
    }
  }
}
