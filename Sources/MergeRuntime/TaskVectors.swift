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
/// Both stream a block of entries at a time (a sparse τ's selection holds one tensor's
/// magnitudes), read their inputs read-only and write their output atomically
/// (``OutputFolder``). Sums are taken in f64 and rounded once to the stored dtype, so with τ
/// stored exactly — f32 for 16-bit models, f64 for f32 ones, the defaults — applying a task
/// vector to its own base gives back the fine-tune's bytes.
public enum TaskVectors {
  /// Entries per block.
  static let block = 1 << 20

  /// A tensor's entries `range` as f64.
  static func decode(_ view: TensorView, _ range: Range<Int>, into out: inout [Double]) {
    out.removeAll(keepingCapacity: true)
    if view.info.dtype == .float64, let base = view.bytes.baseAddress {
      for i in range { out.append(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
      return
    }
    let floats = [Float](unsafeUninitializedCapacity: range.count) { buffer, n in
      view.decode(range, into: buffer)
      n = range.count
    }
    for f in floats { out.append(Double(f)) }
  }

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
        tensors: specs, shardSize: 0,
        metadata: ShardLayout.defaultMetadata + [(Provenance.toolKey, Tool.description)])
      guard layout.shards.count == 1 else {
        throw .badTaskVector(path: output, reason: "the layout needs one file")
      }
      let writer = try SafetensorsWriter(folder: folder, layout: layout)
      var entries: [TaskVectorManifest.Tensor] = []
      for t in floats {
        entries.append(
          try diffTensor(
            t.name, base: try base.tensor(t.name), fine: try fine.tensor(t.name),
            density: density, dtype: stored, writer: writer))
      }
      try writer.finish()
      // The one file, named as the format says.
      let written = folder.path(of: layout.shards[0].fileName)
      guard rename(written, folder.path(of: TaskVectorManifest.weightsName)) == 0 else {
        throw .io(path: written, call: "rename", errno: errno)
      }
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

  /// One tensor's τ, written dense a block at a time, or sparse from its magnitudes.
  static func diffTensor(
    _ name: String, base: TensorView, fine: TensorView, density: Double, dtype: DType,
    writer: SafetensorsWriter
  ) throws(ModelError) -> TaskVectorManifest.Tensor {
    let n = base.count
    var a: [Double] = []
    var b: [Double] = []
    var tau: [Double] = []
    var norm = 0.0
    var baseNorm = 0.0
    var changed = 0
    let sparse = density < 1
    var magnitudes: [Double] = sparse ? [] : []
    if sparse { magnitudes.reserveCapacity(n) }
    var start = 0
    while start < n {
      let range = start..<min(n, start + block)
      decode(base, range, into: &a)
      decode(fine, range, into: &b)
      tau.removeAll(keepingCapacity: true)
      for i in a.indices {
        let d = b[i] - a[i]
        tau.append(d)
        norm += d * d
        baseNorm += a[i] * a[i]
        if d != 0 { changed += 1 }
      }
      if sparse {
        magnitudes.append(contentsOf: tau.map(abs))
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
      let chosen = topEntries(magnitudes, k)
      // The values again, at the chosen positions (in index order).
      var values: [Double] = []
      values.reserveCapacity(k)
      var one: [Double] = []
      var two: [Double] = []
      for i in chosen {
        decode(base, i..<(i + 1), into: &one)
        decode(fine, i..<(i + 1), into: &two)
        values.append(two[0] - one[0])
      }
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

  /// The positions of the `k` largest of `magnitudes`, equal ones by position, ascending.
  static func topEntries(_ magnitudes: [Double], _ k: Int) -> [Int] {
    guard k > 0 else { return [] }
    guard k < magnitudes.count else { return Array(magnitudes.indices) }
    let threshold = magnitudes.sorted(by: >)[k - 1]
    var chosen: [Int] = []
    chosen.reserveCapacity(k)
    var above = 0
    for m in magnitudes where m > threshold { above += 1 }
    var equalLeft = k - above
    for (i, m) in magnitudes.enumerated() {
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

  /// A task-vector folder opened for reading.
  struct Opened {
    var manifest: TaskVectorManifest
    var weights: ModelWeights
    var scale: Double
    var entries: [String: TaskVectorManifest.Tensor]
  }

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
    var opened: [Opened] = []
    for (folder, scale) in vectors {
      let manifest = try TaskVectorManifest(folder: folder)
      if !force, manifest.base.files != baseFiles {
        let theirs = Dictionary(
          manifest.base.files.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let first = baseFiles.first { theirs[$0.name] != $0 }
        let detail =
          first.map {
            "\($0.name) has SHA-256 \($0.sha256) (\($0.size) bytes), the task vector's base \(theirs[$0.name].map { "\($0.sha256) (\($0.size) bytes)" } ?? "has no such file")"
          } ?? "its base has other files"
        throw .badTaskVector(
          path: folder,
          reason:
            "it was taken from another base ('\(manifest.base.path)'): \(detail); --force applies it anyway"
        )
      }
      let weights = try ModelWeights(
        files: [try SafetensorsFile.open(FileSystem.join(folder, TaskVectorManifest.weightsName))])
      var entries: [String: TaskVectorManifest.Tensor] = [:]
      for t in manifest.tensors {
        guard let info = base.info(t.name) else {
          throw .badTaskVector(
            path: folder, reason: "tensor '\(t.name)' is not in the base '\(basePath)'")
        }
        guard info.shape == t.shape else {
          throw .badTaskVector(
            path: folder,
            reason: "tensor '\(t.name)' has shape \(t.shape), the base's \(info.shape)")
        }
        entries[t.name] = t
      }
      opened.append(Opened(manifest: manifest, weights: weights, scale: scale, entries: entries))
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
        tensors: specs, shardSize: 5_000_000_000,
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
          "- \(v.scale) × τ of `\(v.manifest.finetuned.path.split(separator: "/").last.map(String.init) ?? v.manifest.finetuned.path)`\n"
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
    _ t: TensorInfo, base: TensorView, vectors: [Opened], writer: SafetensorsWriter
  ) throws(ModelError) {
    let touching = vectors.filter { $0.entries[t.name] != nil }
    guard t.dtype.isFloatingPoint, !touching.isEmpty else {
      try writer.write(tensor: t.name, byteOffset: 0, bytes: base.bytes)
      return
    }
    // Each vector's stored entries: a dense view, or the sparse values and indices.
    var dense: [(TensorView, Double)] = []
    var sparse: [(values: [Double], indices: [Int], scale: Double, next: Int)] = []
    for v in touching {
      guard let entry = v.entries[t.name] else { continue }
      if entry.sparse {
        let names = TaskVectorManifest.sparseNames(t.name)
        let valuesView = try v.weights.tensor(names.values)
        let indicesView = try v.weights.tensor(names.indices)
        var values: [Double] = []
        decode(valuesView, 0..<valuesView.count, into: &values)
        var indices: [Int] = []
        guard let raw = indicesView.bytes.baseAddress, indicesView.info.dtype == .int64 else {
          throw .badTaskVector(path: "", reason: "'\(names.indices)' is not int64")
        }
        for j in 0..<indicesView.count {
          let i = Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: j * 8, as: Int64.self)))
          guard i >= 0, i < t.count, indices.last.map({ $0 < i }) ?? true else {
            throw .badTaskVector(
              path: "",
              reason: "'\(names.indices)' holds positions out of order or outside \(t.name)")
          }
          indices.append(i)
        }
        guard values.count == indices.count else {
          throw .badTaskVector(
            path: "", reason: "'\(t.name)' has \(values.count) values, \(indices.count) positions")
        }
        sparse.append((values, indices, v.scale, 0))
      } else {
        dense.append((try v.weights.tensor(t.name), v.scale))
      }
    }
    var sum: [Double] = []
    var tau: [Double] = []
    var start = 0
    while start < t.count {
      let range = start..<min(t.count, start + block)
      decode(base, range, into: &sum)
      for (view, scale) in dense {
        decode(view, range, into: &tau)
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
