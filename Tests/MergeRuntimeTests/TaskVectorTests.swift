import Foundation
import MergeModel
import Synchronization
import Testing
import _TestSupport

@testable import MergeCompiler
@testable import MergeRuntime

/// `merge diff` and `merge apply`: task vectors as objects of their own.
@Suite struct TaskVectorTests {
  static let models = Repository.tinyLlama

  func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  @Test("diff then apply gives back the fine-tune's bytes; −τ then +τ gives back the base")
  func roundTrip() throws {
    let dir = TemporaryDirectory()
    for ft in ["ft0", "ft1"] {
      let manifest = try TaskVectors.diff(
        base: Self.models + "/base", finetuned: Self.models + "/\(ft)",
        output: dir.path + "/tau-\(ft)",
        density: 1, dtype: nil)
      #expect(manifest.dtype == .float32)  // bf16 models: τ in f32 is exact
      _ = try TaskVectors.apply(
        base: Self.models + "/base", vectors: [(dir.path + "/tau-\(ft)", 1)],
        output: dir.path + "/back-\(ft)", force: false)
      #expect(
        try bytes(dir.path + "/back-\(ft)/model.safetensors")
          == (try bytes(Self.models + "/\(ft)/model.safetensors")))
    }
    _ = try TaskVectors.apply(
      base: Self.models + "/base",
      vectors: [(dir.path + "/tau-ft0", -1), (dir.path + "/tau-ft0", 1)],
      output: dir.path + "/again", force: false)
    #expect(
      try bytes(dir.path + "/again/model.safetensors")
        == (try bytes(Self.models + "/base/model.safetensors")))
    // Negation removes what the fine-tune added: ft0 − τ₀ is the base (another base: --force).
    _ = try TaskVectors.apply(
      base: Self.models + "/ft0", vectors: [(dir.path + "/tau-ft0", -1)],
      output: dir.path + "/removed", force: true)
    #expect(
      try bytes(dir.path + "/removed/model.safetensors")
        == (try bytes(Self.models + "/base/model.safetensors")))
  }

  @Test("the manifest's counts and norms are the reference's (f64)")
  func manifest() throws {
    let dir = TemporaryDirectory()
    let manifest = try TaskVectors.diff(
      base: Self.models + "/base", finetuned: Self.models + "/ft2", output: dir.path + "/tau",
      density: 1, dtype: nil)
    let read = try TaskVectorManifest(folder: dir.path + "/tau")
    #expect(read == manifest)
    let base = try loadTensors(Self.models + "/base")
    let fine = try loadTensors(Self.models + "/ft2")
    #expect(Set(manifest.tensors.map(\.name)) == Set(base.keys))
    for t in manifest.tensors {
      let a = try #require(base[t.name]).values
      let b = try #require(fine[t.name]).values
      var norm = 0.0
      var baseNorm = 0.0
      var changed = 0
      for (x, y) in zip(a, b) {
        let d = Double(y) - Double(x)
        norm += d * d
        baseNorm += Double(x) * Double(x)
        if d != 0 { changed += 1 }
      }
      #expect(t.changed == changed, "\(t.name)")
      #expect(abs(t.norm - norm.squareRoot()) <= 1e-9 * max(1, norm.squareRoot()), "\(t.name)")
      #expect(abs(t.baseNorm - baseNorm.squareRoot()) <= 1e-9 * max(1, baseNorm.squareRoot()))
    }
    #expect(manifest.base.files.map(\.name) == ["config.json", "model.safetensors"])
    #expect(
      manifest.base.files.last?.sha256
        == SHA256.hex([UInt8](try bytes(Self.models + "/base/model.safetensors"))))
  }

  @Test("a sparse τ keeps exactly the top-D entries by magnitude (ties by position)")
  func sparse() throws {
    let dir = TemporaryDirectory()
    let density = 0.1
    _ = try TaskVectors.diff(
      base: Self.models + "/base", finetuned: Self.models + "/ft1", output: dir.path + "/tau",
      density: density, dtype: nil)
    let stored = try ModelWeights(
      files: [try SafetensorsFile.open(dir.path + "/tau/" + TaskVectorManifest.weightsName)])
    let base = try loadTensors(Self.models + "/base")
    let fine = try loadTensors(Self.models + "/ft1")
    var ties = 0
    for (name, b) in base {
      let tau = zip(b.values, try #require(fine[name]).values).map { Double($1) - Double($0) }
      let k = max(1, Int(density * Double(tau.count)))
      // The reference: a full sort by (magnitude descending, position ascending).
      let reference = tau.indices.sorted {
        (abs(tau[$0]), -$0) > (abs(tau[$1]), -$1)
      }.prefix(k).sorted()
      let names = TaskVectorManifest.sparseNames(name)
      let values = try stored.tensor(names.values).floats()
      let indexView = try stored.tensor(names.indices)
      let indices = (0..<indexView.count).map {
        Int(indexView.bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))
      }
      #expect(indices == Array(reference), "\(name)")
      #expect(values == indices.map { Float(tau[$0]) }, "\(name)")
      // A tie at the threshold: the k-th and the (k+1)-th largest magnitudes are equal.
      let sorted = tau.map(abs).sorted(by: >)
      if k < sorted.count, sorted[k - 1] == sorted[k] { ties += 1 }
    }
    // bf16 task vectors have equal magnitudes at the threshold: the tie rule is exercised.
    #expect(ties > 0)
  }

  @Test("a task vector from another base is refused, naming the file and both hashes")
  func otherBase() throws {
    let dir = TemporaryDirectory()
    _ = try TaskVectors.diff(
      base: Self.models + "/base", finetuned: Self.models + "/ft1", output: dir.path + "/tau",
      density: 1, dtype: nil)
    #expect {
      try TaskVectors.apply(
        base: Self.models + "/ft0", vectors: [(dir.path + "/tau", 1)], output: dir.path + "/out",
        force: false)
    } throws: { error in
      let text = (error as? ModelError)?.description ?? ""
      return text.contains("it was taken from another base")
        && text.contains("model.safetensors has SHA-256 ") && text.contains("--force")
    }
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
  }
}

extension TaskVectorTests {
  @Test(
    "disjoint: true gives each entry the task vector of largest magnitude only",
    arguments: ["task_arithmetic", "ties"])
  func disjoint(_ method: String) throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      """
      merge_method: \(method)
      base_model: models/base
      models:
        - {model: models/ft0, parameters: {weight: 1, density: 1}}
        - {model: models/ft1, parameters: {weight: 1, density: 1}}
        - {model: models/ft2, parameters: {weight: 1, density: 1}}
      parameters:
        disjoint: true
        normalize: false
      dtype: float32
      out_dtype: float32
      """)
    try runRecipe(recipe, output: workspace.path("out"))
    let out = try loadTensors(workspace.path("out"))
    let base = try loadTensors(Self.models + "/base")
    let fine = try (0..<3).map { try loadTensors(Self.models + "/ft\($0)") }
    var entries = 0
    var touched = 0
    for (name, b) in base {
      let o = try #require(out[name]).values
      let taus = try fine.map { m in zip(try #require(m[name]).values, b.values).map { $0 - $1 } }
      for e in b.values.indices {
        // The reference: the first task vector of largest magnitude, the others dropped.
        var winner = 0
        for k in 1..<3 where abs(taus[k][e]) > abs(taus[winner][e]) { winner = k }
        let expected = b.values[e] + taus[winner][e]
        #expect(o[e] == expected, "\(name)[\(e)]")
        if o[e] != expected { return }
        // At most one task vector reached the entry.
        if taus.filter({ $0[e] != 0 }).count > 1 { touched += 1 }
        entries += 1
      }
    }
    // Entries that several fine-tunes changed exist, and each received one τ.
    #expect(touched > 10_000)
    #expect(entries == 312_896)
  }
}

extension TaskVectorTests {
  /// Chunks of the default size (each tensor in one), and small ones (tensors across many,
  /// equal magnitudes at a threshold split between them), on one and two threads.
  static let analyzeCases = [(1 << 16, 2), (1_000, 2)]

  @Test(
    "analyze: cosines, sign conflicts, TIES overlap, shared part and per-tensor figures match a reference",
    arguments: analyzeCases)
  func analyze(chunk: Int, threads: Int) throws {
    let names = ["ft0", "ft1", "ft2"]
    let report = try InterferenceReport.analyze(
      base: Self.models + "/base", models: names.map { Self.models + "/" + $0 }, density: 0.3,
      threads: threads, chunk: chunk)
    let base = try loadTensors(Self.models + "/base")
    let fine = try names.map { try loadTensors(Self.models + "/" + $0) }
    // The reference: every task vector flattened into one f64 vector, tensors in name order.
    let order = base.keys.sorted()
    let flat: [[Double]] = try fine.map { m in
      try order.flatMap { name in
        zip(try #require(m[name]).values, try #require(base[name]).values).map {
          Double($0) - Double($1)
        }
      }
    }
    for i in 0..<3 {
      for j in 0..<3 {
        var dot = 0.0
        var ni = 0.0
        var nj = 0.0
        for e in flat[i].indices {
          dot += flat[i][e] * flat[j][e]
          ni += flat[i][e] * flat[i][e]
          nj += flat[j][e] * flat[j][e]
        }
        #expect(abs(report.whole.cosine[i][j] - dot / (ni * nj).squareRoot()) < 1e-6)
      }
    }
    var shared = 0
    var conflicting = 0
    for e in flat[0].indices {
      let signs = flat.map { $0[e] }.filter { $0 != 0 }.map { $0 > 0 }
      if signs.count >= 2 {
        shared += 1
        if Set(signs).count == 2 { conflicting += 1 }
      }
    }
    #expect(abs(report.whole.conflictRate - Double(conflicting) / Double(shared)) < 1e-6)
    // The shared component: the mean τ, and each τ's share of ‖τ‖² outside its direction
    // (each τ minus its projection on the mean, measured).
    let mean = flat[0].indices.map { e in (flat[0][e] + flat[1][e] + flat[2][e]) / 3 }
    let meanSquared = mean.reduce(0) { $0 + $1 * $1 }
    #expect(abs(report.sharedNormSquared.squareRoot() - meanSquared.squareRoot()) < 1e-6)
    for i in 0..<3 {
      let along = zip(flat[i], mean).reduce(0) { $0 + $1.0 * $1.1 } / meanSquared
      let rest = zip(flat[i], mean).reduce(0) { $0 + ($1.0 - along * $1.1) * ($1.0 - along * $1.1) }
      let norm = flat[i].reduce(0) { $0 + $1 * $1 }
      #expect(abs(report.outsideSquared[i] / report.normSquared[i] - rest / norm) < 1e-6)
    }
    // Per tensor: norm, changed share, the top 1% share of ‖τ‖².
    for t in report.tensors {
      let b = try #require(base[t.name]).values
      for (m, model) in fine.enumerated() {
        let tau = zip(try #require(model[t.name]).values, b).map { Double($0) - Double($1) }
        let squares = tau.map { $0 * $0 }.sorted(by: >)
        let total = squares.reduce(0, +)
        #expect(abs(t.norm[m] - total.squareRoot()) < 1e-6)
        let baseNorm = b.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(t.relative[m] - (baseNorm > 0 ? total.squareRoot() / baseNorm : 0)) < 1e-6)
        #expect(abs(t.changed[m] - Double(tau.filter { $0 != 0 }.count) / Double(tau.count)) < 1e-9)
        let k = max(1, Int((0.01 * Double(tau.count)).rounded(.up)))
        let top1 = total > 0 ? squares.prefix(k).reduce(0, +) / total : 0  // an unchanged tensor
        #expect(abs(t.top1[m] - top1) < 1e-6, "\(t.name)")
        let k10 = max(1, Int((0.1 * Double(tau.count)).rounded(.up)))
        let top10 = total > 0 ? squares.prefix(k10).reduce(0, +) / total : 0
        #expect(abs(t.top10[m] - top10) < 1e-6, "\(t.name)")
      }
    }
    // TIES trimming at 0.3, with the reference's own selection (full sort, ties by position).
    var keptAny = 0
    var keptShared = 0
    var keptConflicting = 0
    for name in order {
      let b = try #require(base[name]).values
      let taus = try fine.map { m in
        zip(try #require(m[name]).values, b).map { Double($0) - Double($1) }
      }
      let k = max(1, Int(0.3 * Double(b.count)))
      let kept = taus.map { tau in
        Set(tau.indices.sorted { (abs(tau[$0]), -$0) > (abs(tau[$1]), -$1) }.prefix(k))
      }
      for e in b.indices {
        let by = (0..<3).filter { kept[$0].contains(e) }
        if !by.isEmpty { keptAny += 1 }
        if by.count >= 2 {
          keptShared += 1
          if Set(by.compactMap { taus[$0][e] == 0 ? nil : taus[$0][e] > 0 }).count == 2 {
            keptConflicting += 1
          }
        }
      }
    }
    #expect(report.keptAny == keptAny)
    #expect(report.keptShared == keptShared)
    #expect(report.keptConflicting == keptConflicting)
    let json = report.json
    #expect(json["models"]?.arrayValue?.count == 3)
    #expect(json["tensors"]?.arrayValue?.count == 39)
    #expect(json["tensors"]?.arrayValue?.first?["changed"]?.arrayValue?.count == 3)
    #expect(json["sign_conflicts"] != nil && json["cosine"]?.arrayValue?.count == 3)
  }
}

extension TaskVectorTests {
  /// Three fine-tunes (one fused kernel for pass 1) and five (the kernels step by step).
  @Test(
    "analyze's AVX2 kernels give the counts of its Swift loops, and sums within 1e-12",
    arguments: [["ft0", "ft1", "ft2"], ["ft0", "ft1", "ft2", "ft1", "ft0"]])
  func analyzeKernels(names: [String]) throws {
    let models = names.map { Self.models + "/" + $0 }
    let swift = try InterferenceReport.analyze(
      base: Self.models + "/base", models: models, density: 0.4, threads: 2, chunk: 1_003,
      kernels: false)
    let kernels = try InterferenceReport.analyze(
      base: Self.models + "/base", models: models, density: 0.4, threads: 2, chunk: 1_003)
    #expect(kernels.keptAny == swift.keptAny && kernels.keptShared == swift.keptShared)
    #expect(kernels.keptConflicting == swift.keptConflicting)
    #expect(kernels.whole.shared == swift.whole.shared)
    #expect(kernels.whole.conflicting == swift.whole.conflicting)
    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(1, abs(b)) }
    for (a, b) in zip(kernels.tensors, swift.tensors) {
      #expect(a.name == b.name)
      #expect(a.changed == b.changed, "\(a.name)")
      for m in models.indices {
        #expect(close(a.norm[m], b.norm[m]) && close(a.top1[m], b.top1[m]), "\(a.name)")
        #expect(close(a.top10[m], b.top10[m]) && close(a.relative[m], b.relative[m]), "\(a.name)")
      }
    }
    for i in models.indices {
      for j in models.indices {
        #expect(close(kernels.whole.cosine[i][j], swift.whole.cosine[i][j]))
      }
    }
  }

  @Test("analyze gives the same figures on one thread and on two")
  func analyzeThreads() throws {
    let models = ["ft0", "ft1", "ft2"].map { Self.models + "/" + $0 }
    let one = try InterferenceReport.analyze(
      base: Self.models + "/base", models: models, density: 0.5, threads: 1, chunk: 777)
    let two = try InterferenceReport.analyze(
      base: Self.models + "/base", models: models, density: 0.5, threads: 2, chunk: 777)
    #expect(one.json.formatted() == two.json.formatted())
    #expect(one.keptShared > 0)
  }
}

extension TaskVectorTests {
  @Test("orthogonalize: true makes the task vectors added pairwise orthogonal (|cos| < 1e-6)")
  func orthogonalize() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      """
      merge_method: task_arithmetic
      base_model: models/base
      models:
        - {model: models/ft0, parameters: {weight: 1}}
        - {model: models/ft1, parameters: {weight: 1}}
        - {model: models/ft2, parameters: {weight: 1}}
      parameters: {orthogonalize: true}
      dtype: float32
      """)
    let merge = try compileRecipe(recipe)
    var checked = 0
    for graph in merge.graphs {
      // The vectors added: the operands of the sum the base is added to.
      guard
        let sum = graph.nodes.firstIndex(where: {
          if case .sum = $0.op { return true } else { return false }
        })
      else { continue }
      var vectors: [[Float]] = []
      for operand in graph.nodes[sum].inputs {
        // The same graph, storing that operand as f32.
        var g = graph
        g.nodes.append(Node(op: .store(.float32), inputs: [operand]))
        g.output = NodeID(index: g.nodes.count - 1)
        let executor = try TensorExecutor(graph: g, models: merge.plan.models, threads: 2)
        let values = Mutex([Float](repeating: 0, count: graph.plan.count))
        try executor.run { offset, bytes in
          values.withLock { v in
            for k in 0..<(bytes.count / 4) {
              v[offset / 4 + k] = bytes.loadUnaligned(fromByteOffset: k * 4, as: Float.self)
            }
          }
        }
        vectors.append(values.withLock { $0 })
      }
      #expect(vectors.count == 3, "\(graph.plan.name)")
      for i in 0..<vectors.count {
        for j in (i + 1)..<vectors.count {
          var dot = 0.0
          var a = 0.0
          var b = 0.0
          for e in vectors[i].indices {
            dot += Double(vectors[i][e]) * Double(vectors[j][e])
            a += Double(vectors[i][e]) * Double(vectors[i][e])
            b += Double(vectors[j][e]) * Double(vectors[j][e])
          }
          guard a > 0, b > 0 else { continue }
          #expect(abs(dot / (a * b).squareRoot()) < 1e-6, "\(graph.plan.name) \(i) \(j)")
        }
      }
      checked += 1
    }
    #expect(checked == 39)
  }
}

extension TaskVectorTests {
  @Test("a task-vector folder is a recipe source: BASE+TV merges as the fine-tune it came from")
  func recipeSource() throws {
    let workspace = ModelWorkspace()
    _ = try TaskVectors.diff(
      base: Self.models + "/base", finetuned: Self.models + "/ft0",
      output: workspace.path("tau0"), density: 1, dtype: nil)
    _ = try TaskVectors.diff(
      base: Self.models + "/base", finetuned: Self.models + "/ft1",
      output: workspace.path("tau1"), density: 0.2, dtype: nil)
    let dense = workspace.recipe(
      "merge_method: linear\nmodels:\n  - model: models/base+tau0\n    parameters: {weight: 1}\ndtype: float32\nout_dtype: bfloat16\n",
      name: "dense.yml")
    try runRecipe(dense, output: workspace.path("dense"))
    let ours = try loadTensors(workspace.path("dense"))
    let ft0 = try loadTensors(Self.models + "/ft0")
    for (name, t) in ft0 {
      #expect(ours[name]?.values.map(\.bitPattern) == t.values.map(\.bitPattern), "\(name)")
    }
    // A sparse τ in a recipe gives what merge apply gives.
    let sparse = workspace.recipe(
      "merge_method: linear\nmodels:\n  - model: models/base+tau1\n    parameters: {weight: 1}\ndtype: float32\nout_dtype: bfloat16\n",
      name: "sparse.yml")
    try runRecipe(sparse, output: workspace.path("sparse"))
    _ = try TaskVectors.apply(
      base: Self.models + "/base", vectors: [(workspace.path("tau1"), 1)],
      output: workspace.path("applied"), force: false)
    let a = try loadTensors(workspace.path("sparse"))
    let b = try loadTensors(workspace.path("applied"))
    #expect(Set(a.keys) == Set(b.keys))
    for (name, t) in b {
      #expect(a[name]?.values.map(\.bitPattern) == t.values.map(\.bitPattern), "\(name)")
    }
    // And the sparse τ changed something: not the base.
    let base = try loadTensors(Self.models + "/base")
    #expect(a.contains { base[$0.key]?.values != $0.value.values })
  }
}

extension TaskVectorTests {
  /// A model folder holding one f32 tensor `w` of `values`.
  func singleTensorModel(_ dir: TemporaryDirectory, _ name: String, _ values: [Float]) -> String {
    dir.write(
      name + "/model.safetensors", bytes: f32SafetensorsBytes([("w", [values.count], values)]))
    dir.write(name + "/config.json", "{\"model_type\": \"llama\"}")
    return dir.path + "/" + name
  }

  @Test(
    "analyze with ±0, subnormals, ∞ and equal magnitudes across chunks: counts match a reference")
  func analyzeSpecialValues() throws {
    let dir = TemporaryDirectory()
    let sub = Float.leastNonzeroMagnitude
    let fine: [[Float]] = [
      [0, -0.0, sub, -sub, 2, 2, -2, 2, 1, 1, .infinity, 3, -1, 2, 0, 2, -2, 0.5, 2, 2, 2],
      [-0.0, 0, -sub, -sub, -2, 2, 2, 2, -1, 1, -1, 0, 2, 2, -2, 0, 2, -0.5, 2, -2, 1],
    ]
    let base = singleTensorModel(dir, "base", [Float](repeating: 0, count: fine[0].count))
    let paths = fine.enumerated().map { singleTensorModel(dir, "ft\($0)", $1) }
    let density = 0.3
    for (chunk, kernels) in [(4, true), (16, true), (16, false)] {
      try checkSpecialValues(
        InterferenceReport.analyze(
          base: base, models: paths, density: density, threads: 2, chunk: chunk,
          kernels: kernels), fine: fine, density: density)
    }
  }

  func checkSpecialValues(_ report: InterferenceReport, fine: [[Float]], density: Double) throws {
    // The reference: τ is the fine-tune (base zero); −0 is unchanged.
    let t = try #require(report.tensors.first)
    for (m, tau) in fine.enumerated() {
      #expect(t.changed[m] == Double(tau.filter { $0 != 0 }.count) / Double(tau.count))
    }
    var shared = 0
    var conflicting = 0
    for e in fine[0].indices {
      let nonzero = fine.map { $0[e] }.filter { $0 != 0 }
      if nonzero.count >= 2 {
        shared += 1
        if nonzero.contains(where: { $0 > 0 }) && nonzero.contains(where: { $0 < 0 }) {
          conflicting += 1
        }
      }
    }
    #expect(report.whole.shared == shared && report.whole.conflicting == conflicting)
    #expect(shared == 16 && conflicting == 9)
    let k = TaskVectorManifest.kept(count: fine[0].count, density: density)
    let kept = fine.map { tau in
      Set(tau.indices.sorted { (abs(tau[$0]), -$0) > (abs(tau[$1]), -$1) }.prefix(k))
    }
    var keptAny = 0
    var keptShared = 0
    var keptConflicting = 0
    for e in fine[0].indices {
      let by = fine.indices.filter { kept[$0].contains(e) }
      keptAny += by.isEmpty ? 0 : 1
      if by.count >= 2 {
        keptShared += 1
        let signs = Set(by.compactMap { fine[$0][e] == 0 ? nil : fine[$0][e] > 0 })
        if signs.count == 2 { keptConflicting += 1 }
      }
    }
    #expect(report.keptAny == keptAny)
    #expect(report.keptShared == keptShared)
    #expect(report.keptConflicting == keptConflicting)
    // ft1 is finite: its top 10% (three entries, all of magnitude 2) hold 12 of ‖τ‖².
    let total = fine[1].reduce(0.0) { $0 + Double($1) * Double($1) }
    #expect(abs(t.top10[1] - 12 / total) < 1e-12)
    // ∞ in ft0: no crash, and JSON stays valid (non-finite figures print as 0).
    #expect(report.json["tensors"]?.arrayValue?.count == 1)
  }
}

extension TaskVectorTests {
  @Test(
    "top-k of f64 magnitudes: a radix selection of high then low words matches a full sort",
    arguments: [1, 7, 1000, 99_999, 199_999])
  func topEntries(k: Int) {
    var rng = SplitMix64(state: UInt64(k))
    // Values that share high words and differ in the low ones (f64s a few ulps apart), equal
    // magnitudes of both signs, ±0, subnormals and ±∞: 200,001 of them.
    let steps: [Double] = [1e-3, 0.5, 3.75, 1e300]
    let values: [Double] = (0..<200_001).map { _ in
      let r = rng.next()
      switch r % 16 {
      case 0: return r & 16 == 0 ? 0 : -0.0
      case 1: return Double(bitPattern: r >> 20)  // subnormal
      case 2: return r & 16 == 0 ? .infinity : -.infinity
      default:
        let m = steps[Int(r >> 8) % steps.count]
        let v = Double(bitPattern: m.bitPattern &+ (r >> 40) % 5)
        return r & 32 == 0 ? v : -v
      }
    }
    let reference = values.indices.sorted {
      let a = values[$0].magnitude.bitPattern
      let b = values[$1].magnitude.bitPattern
      return a != b ? a > b : $0 < $1
    }.prefix(k).sorted()
    #expect(TaskVectors.topEntries(byMagnitude: values, k) == Array(reference))
  }
}
