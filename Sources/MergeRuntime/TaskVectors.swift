import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Task vectors as objects of their own: `merge diff` takes τ = θ_fine-tuned − θ_base into a
/// task-vector folder (``TaskVectorManifest``), `merge apply` adds scaled task vectors to a base.
///
/// Both stream a block of entries at a time (a sparse τ's selection holds one tensor's τ
/// values), read their inputs read-only and write their output atomically
/// (``OutputFolder``). Sums are taken in f64 and rounded once to the stored dtype, so with τ
/// stored exactly — f32 for 16-bit models, f64 for f32 ones, the defaults — applying a task
/// vector to its own base gives back the fine-tune's bytes.
public enum TaskVectors {
  /// Entries per block.
  static let block = 1 << 20

  /// `values` rounded once to `dtype`, as bytes.
  static func encode(_ values: [Double], _ dtype: DType) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
    out.withUnsafeMutableBytes { raw in
      switch dtype {
      case .float64:
        for (i, v) in values.enumerated() {
          raw.storeBytes(of: v, toByteOffset: i * 8, as: Double.self)
        }
      case .float32:
        for (i, v) in values.enumerated() {
          raw.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
        }
      case .bfloat16:
        for (i, v) in values.enumerated() {
          raw.storeBytes(
            of: FloatConversion.bfloat16(from: Float(v)), toByteOffset: i * 2, as: UInt16.self)
        }
      case .float16:
        for (i, v) in values.enumerated() {
          raw.storeBytes(
            of: FloatConversion.float16(from: Float(v)), toByteOffset: i * 2, as: UInt16.self)
        }
      default: break
      }
    }
    return out
  }

  /// Writes `bytes` as part of tensor `name`'s data at `offset`.
  static func put(
    _ bytes: [UInt8], tensor name: String, at offset: Int, in writer: SafetensorsWriter
  )
    throws(ModelError)
  {
    var failure: ModelError?
    bytes.withUnsafeBytes { raw in
      do throws(ModelError) {
        try writer.write(tensor: name, byteOffset: offset, bytes: raw)
      } catch {
        failure = error
      }
    }
    if let failure { throw failure }
  }

  // MARK: diff

  /// Takes τ = `finetuned` − `base` into the task-vector folder `output`.
  ///
  /// - Parameters:
  ///   - density: below 1, each tensor keeps its ⌊density·n⌋ entries of largest magnitude
  ///     (equal magnitudes by position), stored sparse.
  ///   - dtype: τ's stored dtype; nil: f32 when every floating tensor of both models is 16-bit,
  ///     else f64 (exact either way).
  /// - Throws: `ModelError` for a model that cannot be read, a tensor one model lacks or
  ///   shapes that differ, or an output that cannot be written.
  public static func diff(
    base basePath: String, finetuned finetunedPath: String, output: String, density: Double,
    dtype: DType?
  ) throws(ModelError) -> TaskVectorManifest {
    let baseFolder = try ModelFolder(path: basePath)
    let fineFolder = try ModelFolder(path: finetunedPath)
    let base = try baseFolder.openWeights()
    let fine = try fineFolder.openWeights()
    let floats = base.tensors.filter { $0.dtype.isFloatingPoint }
    for t in fine.tensors where t.dtype.isFloatingPoint && base.info(t.name) == nil {
      throw .badTaskVector(
        path: finetunedPath,
        reason:
          "tensor '\(t.name)' is not in the base '\(basePath)'; a task vector has no entry for it")
    }
    for t in floats {
      guard let f = fine.info(t.name) else {
        throw .missingTensor(path: finetunedPath, tensor: t.name)
      }
      guard f.shape == t.shape else {
        throw .badTaskVector(
          path: finetunedPath,
          reason: "tensor '\(t.name)' has shape \(f.shape) there but \(t.shape) in the base")
      }
    }
    let wide = (floats + fine.tensors).contains { $0.dtype == .float32 || $0.dtype == .float64 }
    let stored = dtype ?? (wide ? .float64 : .float32)
    let sparse = density < 1
    var specs: [TensorSpec] = []
    for t in floats {
      if sparse {
        let k = TaskVectorManifest.kept(count: t.count, density: density)
        let names = TaskVectorManifest.sparseNames(t.name)
        specs.append(TensorSpec(name: names.values, dtype: stored, shape: [k]))
        specs.append(TensorSpec(name: names.indices, dtype: .int64, shape: [k]))
      } else {
        specs.append(TensorSpec(name: t.name, dtype: stored, shape: t.shape))
      }
    }
    let folder = try OutputFolder(destination: output)
    do throws(ModelError) {
      let layout = ShardLayout(
        tensors: specs, fileName: TaskVectorManifest.weightsName,
        metadata: ShardLayout.defaultMetadata + [(Provenance.toolKey, Tool.description)])
      let writer = try SafetensorsWriter(folder: folder, layout: layout)
      var entries: [TaskVectorManifest.Tensor] = []
      for t in floats {
        entries.append(
          try diffTensor(
            t.name, base: try base.tensor(t.name), fine: try fine.tensor(t.name),
            density: density, dtype: stored, writer: writer))
      }
      try writer.finish()
      let manifest = TaskVectorManifest(
        dtype: stored, density: sparse ? density : 1,
        base: .init(path: basePath, files: try TaskVectorManifest.files(of: baseFolder)),
        finetuned: .init(path: finetunedPath, files: try TaskVectorManifest.files(of: fineFolder)),
        tensors: entries)
      try folder.write(TaskVectorManifest.manifestName, bytes: Array(manifest.text.utf8))
      try folder.commit()
      return manifest
    } catch {
      folder.discard()
      throw error
    }
  }

  /// One tensor's τ, written dense a block at a time, or sparse from the whole tensor's τ.
  static func diffTensor(
    _ name: String, base: TensorView, fine: TensorView, density: Double, dtype: DType,
    writer: SafetensorsWriter
  ) throws(ModelError) -> TaskVectorManifest.Tensor {
    // Resident memory stays at one tensor's: its input pages go when it is done.
    defer {
      base.release()
      fine.release()
    }
    let n = base.count
    var a: [Double] = []
    var b: [Double] = []
    var tau: [Double] = []
    var norm = 0.0
    var baseNorm = 0.0
    var changed = 0
    let sparse = density < 1
    // A sparse τ's selection needs the whole tensor: its values are kept for it.
    var whole: [Double] = []
    if sparse { whole.reserveCapacity(n) }
    var start = 0
    while start < n {
      let range = start..<min(n, start + block)
      base.decodeDoubles(range, into: &a)
      fine.decodeDoubles(range, into: &b)
      tau.removeAll(keepingCapacity: true)
      for i in a.indices {
        let d = b[i] - a[i]
        tau.append(d)
        norm += d * d
        baseNorm += a[i] * a[i]
        if d != 0 { changed += 1 }
      }
      if sparse {
        whole.append(contentsOf: tau)
      } else {
        let bytes = encode(tau, dtype)
        try put(bytes, tensor: name, at: range.lowerBound * dtype.byteSize, in: writer)
      }
      start = range.upperBound
    }
    var kept = n
    if sparse {
      let k = TaskVectorManifest.kept(count: n, density: density)
      kept = k
      let chosen = topEntries(byMagnitude: whole, k)
      let values = chosen.map { whole[$0] }
      let names = TaskVectorManifest.sparseNames(name)
      let valueBytes = encode(values, dtype)
      try put(valueBytes, tensor: names.values, at: 0, in: writer)
      var indexBytes = [UInt8](repeating: 0, count: k * 8)
      indexBytes.withUnsafeMutableBytes { raw in
        for (j, i) in chosen.enumerated() {
          raw.storeBytes(of: Int64(i).littleEndian, toByteOffset: j * 8, as: Int64.self)
        }
      }
      try put(indexBytes, tensor: names.indices, at: 0, in: writer)
    }
    return TaskVectorManifest.Tensor(
      name: name, shape: base.info.shape, sparse: sparse, kept: kept, changed: changed,
      norm: norm.squareRoot(), baseNorm: baseNorm.squareRoot())
  }

  /// The positions of the `k` entries of `values` of largest magnitude, equal magnitudes by
  /// position, ascending.
  ///
  /// A magnitude's f64 bit pattern orders as the magnitude does (NaN above ∞), so the k-th
  /// largest is found by the executor's radix selection: of the patterns' high words, then of
  /// the low words of the entries whose high word is the one selected. Two passes over the
  /// values and two over those few, where a sort took O(n log n).
  static func topEntries(byMagnitude values: [Double], _ k: Int) -> [Int] {
    guard k > 0 else { return [] }
    guard k < values.count else { return Array(values.indices) }
    func bits(_ v: Double) -> UInt64 { v.magnitude.bitPattern }
    let rank = values.count - k
    let highWords = values.map { UInt32(truncatingIfNeeded: bits($0) >> 32) }
    func select(_ words: [UInt32], rank: Int) -> (threshold: UInt32, tiesBelow: Int) {
      words.withUnsafeBufferPointer { w in
        w.baseAddress.map { TensorExecutor.radixSelect(bits: $0, count: w.count, rank: rank) }
          ?? (0, 0)
      }
    }
    let (high, highTies) = select(highWords, rank: rank)
    let lowWords = values.lazy.map(bits).filter { $0 >> 32 == UInt64(high) }
      .map { UInt32(truncatingIfNeeded: $0) }
    let (low, _) = select(Array(lowWords), rank: highTies)
    let threshold = UInt64(high) << 32 | UInt64(low)
    var equalLeft = k - values.reduce(0) { $0 + (bits($1) > threshold ? 1 : 0) }
    var chosen: [Int] = []
    chosen.reserveCapacity(k)
    for (i, v) in values.enumerated() {
      let m = bits(v)
      if m > threshold {
        chosen.append(i)
      } else if m == threshold && equalLeft > 0 {
        chosen.append(i)
        equalLeft -= 1
      }
    }
    return chosen
  }

  // MARK: apply

  /// θ = base + Σ scaleᵢ·τᵢ into the model folder `output`: every tensor the vectors name,
  /// summed in f64 and rounded once to the base's dtype; the others, config.json and the
  /// tokenizer files copied from the base.
  ///
  /// - Throws: `ModelError` when a task vector was taken from another base (its files' sizes
  ///   or SHA-256 differ; unless `force`), names a tensor the base lacks or of another shape,
  ///   or when a file cannot be read or written.
  public static func apply(
    base basePath: String, vectors: [(folder: String, scale: Double)], output: String,
    force: Bool, replaceExisting: Bool = false
  ) throws(ModelError) -> Int {
    let baseFolder = try ModelFolder(path: basePath)
    let base = try baseFolder.openWeights()
    let baseFiles = try TaskVectorManifest.files(of: baseFolder)
    var opened: [(source: TaskVectorSource, scale: Double)] = []
    for (folder, scale) in vectors {
      let source = try TaskVectorSource(path: folder)
      if let problem = source.problems(with: base).first { throw problem }
      let theirs = source.manifest.base.files
      if !force, theirs != baseFiles {
        let byName = Dictionary(theirs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let first = baseFiles.first { byName[$0.name] != $0 }
        let detail =
          first.map {
            "\($0.name) has SHA-256 \($0.sha256) (\($0.size) bytes), the task vector's base \(byName[$0.name].map { "\($0.sha256) (\($0.size) bytes)" } ?? "has no such file")"
          } ?? "its base has other files"
        throw .badTaskVector(
          path: folder,
          reason:
            "it was taken from another base ('\(source.manifest.base.path)'): \(detail); --force applies it anyway"
        )
      }
      opened.append((source, scale))
    }
    // Laid out exactly as the base (its headers byte for byte), so that the base plus its own
    // fine-tune's τ is the fine-tune's file; a PyTorch checkpoint base is laid out anew.
    let layout: ShardLayout
    if baseFolder.weightFiles.allSatisfy({ $0.hasSuffix(".safetensors") }) {
      layout = try ShardLayout(copying: base.files)
    } else {
      let specs = base.tensors.map {
        TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape)
      }
      layout = ShardLayout(
        tensors: specs, shardSize: ShardLayout.defaultShardSize,
        metadata: ShardLayout.defaultMetadata + [(Provenance.toolKey, Tool.description)])
    }
    let folder = try OutputFolder(
      destination: output, existing: replaceExisting ? .replaceMergeOutput : .refuse)
    do throws(ModelError) {
      let writer = try SafetensorsWriter(folder: folder, layout: layout)
      for t in base.tensors {
        try applyTensor(t, base: try base.tensor(t.name), vectors: opened, writer: writer)
      }
      try writer.finish()
      var copied = ["config.json"] + baseFolder.sideFiles()
      if baseFolder.weightMap != nil, layout.shards.map(\.fileName) == baseFolder.weightFiles {
        // The base's own index, in place of the one the writer made.
        unlink(folder.path(of: ModelFolder.indexFileName))
        copied.append(ModelFolder.indexFileName)
      }
      for name in copied {
        let source = FileSystem.join(basePath, name)
        guard FileSystem.kind(of: source) == .file else { continue }
        try FileSystem.copy(source, to: folder.path(of: name), limit: ModelFolder.sideFileLimit)
      }
      var card = "---\nlibrary_name: transformers\ntags:\n- merge\n- task-vector\n---\n\n"
      card +=
        "# Task vectors applied\n\nMade with `\(Tool.description)` (`merge apply`): θ = base + Σ scale·τ.\n\n"
      card += "- Base: `\(basePath.split(separator: "/").last.map(String.init) ?? basePath)`\n"
      for v in opened {
        card +=
          "- \(v.scale) × τ of `\(v.source.manifest.finetuned.path.split(separator: "/").last.map(String.init) ?? v.source.manifest.finetuned.path)`\n"
      }
      try folder.write("README.md", bytes: Array(card.utf8))
      try folder.commit()
    } catch {
      folder.discard()
      throw error
    }
    return base.tensors.count
  }

  /// One output tensor: the base's bytes when no vector names it, else the sum a block at a
  /// time.
  static func applyTensor(
    _ t: TensorInfo, base: TensorView, vectors: [(source: TaskVectorSource, scale: Double)],
    writer: SafetensorsWriter
  ) throws(ModelError) {
    let touching = vectors.filter { $0.source.entries[t.name] != nil }
    guard t.dtype.isFloatingPoint, !touching.isEmpty else {
      try writer.write(tensor: t.name, byteOffset: 0, bytes: base.bytes)
      return
    }
    // Each vector's stored entries: a dense view, or the sparse values and positions.
    var dense: [(TensorView, Double)] = []
    // Resident memory stays at one tensor's: its input pages go when it is done.
    defer {
      base.release()
      for (view, _) in dense { view.release() }
    }
    var sparse: [(values: [Double], indices: [Int], scale: Double, next: Int)] = []
    for v in touching {
      if v.source.entries[t.name]?.sparse == true {
        let (values, positions) = try v.source.sparseEntries(t.name, count: t.count)
        sparse.append((values, positions, v.scale, 0))
      } else {
        dense.append((try v.source.weights.tensor(t.name), v.scale))
      }
    }
    var sum: [Double] = []
    var tau: [Double] = []
    var start = 0
    while start < t.count {
      let range = start..<min(t.count, start + block)
      base.decodeDoubles(range, into: &sum)
      for (view, scale) in dense {
        view.decodeDoubles(range, into: &tau)
        for i in sum.indices { sum[i] += scale * tau[i] }
      }
      for s in sparse.indices {
        while sparse[s].next < sparse[s].indices.count,
          sparse[s].indices[sparse[s].next] < range.upperBound
        {
          let i = sparse[s].indices[sparse[s].next]
          sum[i - range.lowerBound] += sparse[s].scale * sparse[s].values[sparse[s].next]
          sparse[s].next += 1
        }
      }
      let bytes = encode(sum, t.dtype)
      try put(bytes, tensor: t.name, at: range.lowerBound * t.dtype.byteSize, in: writer)
      start = range.upperBound
    }
  }
}
