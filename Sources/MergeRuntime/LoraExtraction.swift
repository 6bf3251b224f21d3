import CLapack
import Dispatch
import Foundation
import MergeModel
import Synchronization

/// `merge extract-lora`: a PEFT LoRA adapter whose B·A approximates each linear layer's task
/// vector τ = θ_fine-tuned − θ_base, as `mergekit-extract-lora` makes it.
///
/// Each linear weight's τ (taken in f64, decomposed in f32 as mergekit does) goes through
/// LAPACK's SVD (OpenBLAS underneath on Debian): only its leading r singular vectors for a
/// fixed rank (`sgesvdx`), all of it with `energy` (`sgesdd`); with singular values s, the adapter keeps the largest r of
/// them and splits each evenly, A = diag(√s)·Vᵀ (r × in) and B = U·diag(√s) (out × r), rounded
/// once to the output dtype, so B·A is the best rank-r approximation of τ (Eckart–Young) up to
/// that rounding. r is `--rank`, or with `--energy E` the smallest rank whose singular values
/// hold E of ‖τ‖² (at most `--rank`). Embeddings, the output head and every other tensor that is
/// not a linear weight (norms) are saved whole from the fine-tune (`modules_to_save`), and a
/// linear layer's bias as τ in `lora_B.bias`, as mergekit does. `lora_alpha` equals each
/// module's rank, so PEFT's scale is 1.
///
/// Modules are decomposed in parallel, each with a single-threaded BLAS, so the adapter's bytes
/// do not depend on the thread count (OpenBLAS's kernels are chosen by CPU: another CPU may
/// round differently).
public enum LoraExtraction {
  /// One decomposed module.
  public struct Module: Sendable {
    /// The weight's name without `.weight`.
    public var name: String
    public var rank: Int
    /// ‖τ‖ and ‖τ − B·A‖/‖τ‖ before the rounding to the output dtype (from the singular
    /// values left out).
    public var norm: Double
    public var relativeError: Double
  }

  /// What was written.
  public struct Summary: Sendable {
    public var modules: [Module]
    /// Tensors saved whole (`modules_to_save`), and the module names PEFT is given for them.
    public var saved: [String]
    public var modulesToSave: [String]
    /// ‖τ − B·A‖/‖τ‖ over all decomposed modules together.
    public var relativeError: Double
  }

  /// How a tensor of the fine-tune goes into the adapter.
  enum Role: Equatable {
    case lora
    case loraBias
    case save
  }

  /// Names of input and output embeddings (saved whole, as mergekit does by default).
  static let embeddingSuffixes = [
    "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight",
    "lm_head.weight", "embed_out.weight", "output.weight",
  ]

  static func role(of info: TensorInfo, linear: Set<String>) -> Role {
    if embeddingSuffixes.contains(where: { info.name == $0 || info.name.hasSuffix("." + $0) }) {
      return .save
    }
    if info.shape.count == 2 && info.name.hasSuffix(".weight") { return .lora }
    if info.name.hasSuffix(".bias"),
      linear.contains(String(info.name.dropLast(".bias".count)) + ".weight")
    {
      return .loraBias
    }
    return .save
  }

  /// Extracts the adapter of `finetuned` against `base` into the new folder `output`.
  ///
  /// - Parameters:
  ///   - rank: The rank of every module, or with `energy` the largest.
  ///   - energy: Keep the fewest singular values that hold this share of ‖τ‖² (0 < E ≤ 1).
  ///   - dtype: The dtype of A and B (default: the fine-tune's dtype of each weight).
  /// - Throws: `ModelError` for unreadable models, a linear weight the base lacks or has in
  ///   another shape, a τ with non-finite entries, or an output folder that cannot be written.
  public static func extract(
    base basePath: String, finetuned finetunedPath: String, output: String, rank: Int,
    energy: Double?, dtype: DType?, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
    progress: (@Sendable (Int, Int) -> Void)? = nil
  ) throws(ModelError) -> Summary {
    if let reason = LinearAlgebra.unavailable {
      throw .missingLibrary(library: "LAPACK (for the SVD)", reason: reason)
    }
    let base = try ModelFolder(path: basePath).openWeights()
    let fine = try ModelFolder(path: finetunedPath).openWeights()
    let tensors = fine.tensors.filter { $0.dtype.isFloatingPoint }
    let linear = Set(
      tensors.filter { role(of: $0, linear: []) == .lora }.map(\.name))
    // Every linear weight and bias must be in the base, in the same shape: checked first.
    for t in tensors where role(of: t, linear: linear) != .save {
      guard let b = base.info(t.name) else { throw .missingTensor(path: basePath, tensor: t.name) }
      guard b.shape == t.shape else {
        throw .badTaskVector(
          path: finetunedPath,
          reason: "tensor '\(t.name)' has shape \(t.shape) there but \(b.shape) in the base")
      }
    }
    let targets = tensors.filter { role(of: $0, linear: linear) == .lora }
    // The output folder is checked (and its temporary folder made) before the decompositions.
    let folder = try OutputFolder(destination: output)
    let decomposed: [Factors]
    do {
      decomposed = try decompose(
        targets, base: base, fine: fine, rank: rank, energy: energy, dtype: dtype,
        threads: threads, progress: progress)
    } catch {
      folder.discard()
      throw error
    }

    // The layout: A and B of each module in order, biases, then the tensors saved whole.
    var specs: [TensorSpec] = []
    var modules: [Module] = []
    var modulesToSave: [String] = []
    var saved: [String] = []
    for (t, d) in zip(targets, decomposed) {
      let stem = String(t.name.dropLast(".weight".count))
      let out = dtype ?? t.dtype
      specs.append(
        TensorSpec(
          name: "base_model.model.\(stem).lora_A.weight", dtype: out, shape: [d.rank, t.shape[1]]))
      specs.append(
        TensorSpec(
          name: "base_model.model.\(stem).lora_B.weight", dtype: out, shape: [t.shape[0], d.rank]))
      modules.append(Module(name: stem, rank: d.rank, norm: d.norm, relativeError: d.relativeError))
    }
    for t in tensors {
      switch role(of: t, linear: linear) {
      case .lora: continue
      case .loraBias:
        let stem = String(t.name.dropLast(".bias".count))
        specs.append(
          TensorSpec(
            name: "base_model.model.\(stem).lora_B.bias", dtype: dtype ?? t.dtype, shape: t.shape))
      case .save:
        specs.append(TensorSpec(name: "base_model.model.\(t.name)", dtype: t.dtype, shape: t.shape))
        saved.append(t.name)
        let parts = t.name.split(separator: ".")
        let key = String(parts.count >= 2 ? parts[parts.count - 2] : parts[0])
        if !modulesToSave.contains(key) { modulesToSave.append(key) }
      }
    }
    do throws(ModelError) {
      let layout = ShardLayout(
        tensors: specs, fileName: LoraAdapter.weightsFileName,
        metadata: ShardLayout.defaultMetadata + [(Provenance.toolKey, Tool.description)])
      let writer = try SafetensorsWriter(folder: folder, layout: layout)
      for (t, d) in zip(targets, decomposed) {
        let stem = String(t.name.dropLast(".weight".count))
        try TaskVectors.put(
          d.a, tensor: "base_model.model.\(stem).lora_A.weight", at: 0, in: writer)
        try TaskVectors.put(
          d.b, tensor: "base_model.model.\(stem).lora_B.weight", at: 0, in: writer)
      }
      for t in tensors {
        switch role(of: t, linear: linear) {
        case .lora: continue
        case .loraBias:
          let stem = String(t.name.dropLast(".bias".count))
          let tau = difference(base: try base.tensor(t.name), fine: try fine.tensor(t.name))
          try TaskVectors.put(
            TaskVectors.encode(tau, dtype ?? t.dtype),
            tensor: "base_model.model.\(stem).lora_B.bias", at: 0,
            in: writer)
        case .save:
          // Copied from the mapping as it is, never whole in memory.
          try writer.write(
            tensor: "base_model.model.\(t.name)", byteOffset: 0,
            bytes: try fine.tensor(t.name).bytes)
        }
      }
      try writer.finish()
      let maxRank = modules.map(\.rank).max() ?? 0
      let config = adapterConfig(
        base: basePath, maxRank: maxRank, modules: modules, modulesToSave: modulesToSave,
        hasBias: tensors.contains { role(of: $0, linear: linear) == .loraBias })
      try folder.write(LoraAdapter.configFileName, bytes: Array((config.formatted() + "\n").utf8))
      let total = modules.reduce(0.0) { $0 + $1.norm * $1.norm }
      let lost = modules.reduce(0.0) {
        $0 + ($1.relativeError * $1.norm) * ($1.relativeError * $1.norm)
      }
      let summary = Summary(
        modules: modules, saved: saved, modulesToSave: modulesToSave,
        relativeError: total > 0 ? (lost / total).squareRoot() : 0)
      try folder.write(
        "README.md",
        bytes: Array(
          card(base: basePath, finetuned: finetunedPath, rank: rank, energy: energy, summary)
            .utf8))
      try folder.commit()
      return summary
    } catch {
      folder.discard()
      throw error
    }
  }

  /// One module's factors, encoded in the output dtype.
  struct Factors: Sendable {
    var rank: Int
    var norm: Double
    var relativeError: Double
    var a: [UInt8]
    var b: [UInt8]
  }

  /// τ of a tensor, in f64.
  static func difference(base: TensorView, fine: TensorView) -> [Double] {
    var a: [Double] = []
    var b: [Double] = []
    base.decodeDoubles(0..<base.count, into: &a)
    fine.decodeDoubles(0..<fine.count, into: &b)
    for i in a.indices { b[i] -= a[i] }
    return b
  }

  /// Decomposes the modules on `threads` workers (each SVD on one BLAS thread).
  static func decompose(
    _ targets: [TensorInfo], base: ModelWeights, fine: ModelWeights, rank: Int, energy: Double?,
    dtype: DType?, threads: Int, progress: (@Sendable (Int, Int) -> Void)?
  ) throws(ModelError) -> [Factors] {
    var views: [(TensorView, TensorView)] = []
    for t in targets { views.append((try base.tensor(t.name), try fine.tensor(t.name))) }
    let results = Mutex([Factors?](repeating: nil, count: targets.count))
    let failure = Mutex<ModelError?>(nil)
    let next = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let pairs = views
    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, targets.count))) { _ in
      while true {
        let k = next.add(1, ordering: .relaxed).oldValue
        if k >= targets.count || failure.withLock({ $0 != nil }) { return }
        let info = targets[k]
        let tau = difference(base: pairs[k].0, fine: pairs[k].1)
        pairs[k].0.release()
        pairs[k].1.release()
        guard tau.allSatisfy(\.isFinite) else {
          failure.withLock {
            $0 =
              $0
              ?? .badTaskVector(
                path: info.name, reason: "τ of '\(info.name)' has entries that are not finite")
          }
          return
        }
        let factors = factorize(
          tau, rows: info.shape[0], columns: info.shape[1], rank: rank, energy: energy,
          dtype: dtype ?? info.dtype)
        switch factors {
        case .success(let f): results.withLock { $0[k] = f }
        case .failure(let reason):
          failure.withLock {
            $0 = $0 ?? .badTaskVector(path: info.name, reason: "SVD of '\(info.name)': \(reason)")
          }
          return
        }
        let finished = done.add(1, ordering: .relaxed).newValue
        progress?(finished, targets.count)
      }
    }
    if let error = failure.withLock({ $0 }) { throw error }
    return results.withLock { $0 }.compactMap { $0 }
  }

  struct Failure: Error {
    var reason: String
  }

  /// The rank-r factors of one m × n τ.
  ///
  /// With a fixed rank, only the leading r singular vectors are computed; with `energy`, all
  /// singular values, to choose r. The error left out is ‖τ‖² less the kept values' squares.
  static func factorize(
    _ tau: [Double], rows m: Int, columns n: Int, rank: Int, energy: Double?, dtype: DType
  ) -> Result<Factors, Failure> {
    let total = tau.reduce(0.0) { $0 + $1 * $1 }
    let k = min(m, n)
    let svd: LinearAlgebra.SVD
    switch LinearAlgebra.svd(
      tau.map(Float.init), rows: m, columns: n, leading: energy == nil ? min(rank, k) : nil)
    {
    case .success(let s): svd = s
    case .failure(let f): return .failure(Failure(reason: f.reason))
    }
    var r = min(rank, svd.s.count)
    if let energy {
      var held = 0.0
      var needed = 0
      while needed < svd.s.count && held < energy * total {
        held += Double(svd.s[needed]) * Double(svd.s[needed])
        needed += 1
      }
      r = min(r, max(1, needed))
    }
    r = max(1, r)
    let kept = svd.s.prefix(r).reduce(0.0) { $0 + Double($1) * Double($1) }
    var a = [Double](repeating: 0, count: r * n)
    var b = [Double](repeating: 0, count: m * r)
    for i in 0..<r {
      let root = Double(svd.s[i]).squareRoot()
      for j in 0..<n { a[i * n + j] = root * Double(svd.vt[i * n + j]) }
      for row in 0..<m { b[row * r + i] = Double(svd.u[row * svd.stride + i]) * root }
    }
    return .success(
      Factors(
        rank: r, norm: total.squareRoot(),
        relativeError: total > 0 ? (max(0, total - kept) / total).squareRoot() : 0,
        a: TaskVectors.encode(a, dtype), b: TaskVectors.encode(b, dtype)))
  }

  /// PEFT's `adapter_config.json`, with mergekit-extract-lora's fields.
  static func adapterConfig(
    base: String, maxRank: Int, modules: [Module], modulesToSave: [String], hasBias: Bool
  ) -> JSONValue {
    let targets = Set(modules.map { String($0.name.split(separator: ".").last ?? "") }).sorted()
    let other = modules.filter { $0.rank != maxRank }.map { ($0.name, JSONValue.integer($0.rank)) }
    var fields: [(String, JSONValue)] = [
      ("base_model_name_or_path", .string(base)),
      ("peft_type", .string("LORA")),
      ("use_rslora", .bool(false)),
      ("target_modules", .array(targets.map { .string($0) })),
      ("modules_to_save", .array(modulesToSave.map { .string($0) })),
      ("task_type", .string("CAUSAL_LM")),
      ("r", .integer(maxRank)),
      ("lora_alpha", .integer(maxRank)),
      ("rank_pattern", .object(other)),
      ("alpha_pattern", .object(other)),
      ("lora_dropout", .number("0.0")),
      ("fan_in_fan_out", .bool(false)),
      ("inference_mode", .bool(true)),
    ]
    if hasBias { fields.append(("lora_bias", .bool(true))) }
    return .object(fields)
  }

  static func card(
    base: String, finetuned: String, rank: Int, energy: Double?, _ s: Summary
  ) -> String {
    let rule =
      energy.map { "the fewest singular values holding \($0) of ‖τ‖² (at most \(rank))" }
      ?? "rank \(rank)"
    let ranks = s.modules.map(\.rank)
    return """
      ---
      base_model: \(base)
      library_name: peft
      tags:
      - merge
      - lora
      ---
      # LoRA adapter extracted by \(Tool.description)

      B·A approximates the task vector of `\(finetuned)` against `\(base)` in each of \(s.modules.count) linear layers, by a truncated SVD: \(rule); ranks \(ranks.min() ?? 0)–\(ranks.max() ?? 0). Relative error ‖τ − B·A‖/‖τ‖ over those layers: \(String(format: "%.4f", s.relativeError)) (before rounding to the adapter's dtype). Saved whole from the fine-tune (`modules_to_save`): \(s.modulesToSave.joined(separator: ", ")).

      """
  }
}

/// The LAPACK routines merge uses, through LAPACKE (Debian's liblapacke, OpenBLAS underneath
/// when installed).
enum LinearAlgebra {
  /// A thin SVD, or its leading part: τ ≈ U·diag(s)·Vᵀ with U m × k (row stride `stride`), Vᵀ
  /// k × n, row-major, s in decreasing order; k = min(m, n), or the number of leading values
  /// asked for.
  struct SVD {
    var u: [Float]
    var stride: Int
    var s: [Float]
    var vt: [Float]
  }

  struct Failure: Error {
    var reason: String
  }

  /// Nil once LAPACKE is loaded (opened on first use, see `merge_lapack.h`; OpenBLAS then on
  /// one thread: callers run several decompositions at once, and a fixed thread count keeps the
  /// results' bits fixed); otherwise why it cannot be, and what installs it.
  static var unavailable: String? {
    guard let reason = merge_lapack_load() else { return nil }
    return "\(String(cString: reason)) (Scripts/setup installs Debian's liblapacke-dev and "
      + "libopenblas-dev)"
  }

  /// The SVD of the m × n row-major matrix `a`: all of it (`sgesdd`; `sgesvd` if that does not
  /// converge), or with `leading` below min(m, n) only that many leading values and vectors
  /// (`sgesvdx`, which skips forming the rest).
  static func svd(_ a: [Float], rows m: Int, columns n: Int, leading: Int? = nil) -> Result<
    SVD, Failure
  > {
    let k = min(m, n)
    guard m > 0, n > 0, m <= Int(Int32.max), n <= Int(Int32.max) else {
      return .failure(Failure(reason: "a \(m) × \(n) matrix"))
    }
    if let reason = unavailable { return .failure(Failure(reason: reason)) }
    var s = [Float](repeating: 0, count: k)
    var u = [Float](repeating: 0, count: m * k)
    var vt = [Float](repeating: 0, count: k * n)
    var work = a
    let job = CChar(UInt8(ascii: "S"))
    if let leading, leading < k {
      let vectors = CChar(UInt8(ascii: "V"))
      var found: Int32 = 0
      var superb = [Int32](repeating: 0, count: 12 * k)
      let info = merge_lapack_sgesvdx(
        vectors, vectors, CChar(UInt8(ascii: "I")), Int32(m), Int32(n), &work,
        Int32(n), 0, 0, 1, Int32(max(1, leading)), &found, &s, &u, Int32(k), &vt, Int32(n),
        &superb)
      guard info == 0, Int(found) == max(1, leading) else {
        return .failure(Failure(reason: "LAPACK returned \(info) (the SVD did not converge)"))
      }
      return .success(
        SVD(u: u, stride: k, s: Array(s.prefix(Int(found))), vt: Array(vt.prefix(Int(found) * n))))
    }
    var info = merge_lapack_sgesdd(
      job, Int32(m), Int32(n), &work, Int32(n), &s, &u, Int32(k), &vt, Int32(n))
    if info > 0 {
      work = a
      var superb = [Float](repeating: 0, count: max(1, k - 1))
      info = merge_lapack_sgesvd(
        job, job, Int32(m), Int32(n), &work, Int32(n), &s, &u, Int32(k), &vt,
        Int32(n), &superb)
    }
    guard info == 0 else {
      return .failure(Failure(reason: "LAPACK returned \(info) (the SVD did not converge)"))
    }
    return .success(SVD(u: u, stride: k, s: s, vt: vt))
  }
}
