import Foundation
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler
@testable import MergeRuntime

@Suite struct PassTests {
  /// The graph of `tensor` as lowered, before any pass.
  func graph(_ recipe: String, _ tensor: String = "model.norm.weight") throws -> TensorGraph {
    var options = CompileOptions()
    options.optimize = false
    options.onlyTensor = tensor
    let compilation = Compiler.compile(path: recipe, options: options)
    return try #require(compilation.graphs.first, "\(compilation.diagnostics)")
  }

  @Test("fold-identities removes scale 1 and divide 1 and nothing else")
  func foldIdentities() throws {
    var g = try graph(Repository.parity + "/recipes/task_arithmetic.yml")
    let before = g.nodes.filter { if case .scale = $0.op { return true } else { return false } }
      .count
    #expect(try FoldIdentities().run(&g))
    let after = g.nodes.filter { if case .scale = $0.op { return true } else { return false } }
      .count
    #expect(before - after == 1)  // ft0's weight 1.0
    // With none left, the graph is left exactly as it is (not rebuilt), and so is one with no
    // operand that is zero everywhere.
    let folded = g
    #expect(try FoldIdentities().run(&g) == false)
    #expect(g.nodes == folded.nodes && g.output == folded.output)
    #expect(try DeadInputElimination().run(&g) == false)
    #expect(g.nodes == folded.nodes && g.output == folded.output)
  }

  @Test("dead-input-elimination drops a model whose weight is 0, so it is never read")
  func deadInputs() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      """
      merge_method: ties
      base_model: models/base
      models:
        - {model: models/ft0, parameters: {weight: 1.0, density: 0.5}}
        - {model: models/ft1, parameters: {weight: [0.0, 1.0], density: 0.5}}
      """)
    var g = try graph(recipe)  // model.norm.weight: t = 0, so ft1's weight is 0
    let loadsBefore = g.nodes.filter { if case .load = $0.op { return true } else { return false } }
      .count
    #expect(try DeadInputElimination().run(&g))
    _ = try DeadCodeElimination().run(&g)
    let loads = g.nodes.compactMap { n -> Int? in
      if case .load(let i) = n.op { return i } else { return nil }
    }
    #expect(loadsBefore == 3)
    #expect(loads.count == 2)
    #expect(!loads.contains(1))  // ft1 is input 1
  }

  @Test("byte-copy replaces decode/encode of a same-dtype passthrough")
  func byteCopy() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe("merge_method: passthrough\nmodels:\n  - model: models/ft0\n")
    var g = try graph(recipe)
    #expect(try ByteCopy().run(&g))
    if case .copyBytes = g[g.output].op {} else { Issue.record("the output is not a byte copy") }
    // With a rounding dtype there is nothing to copy.
    var rounded = try graph(Repository.parity + "/recipes/passthrough_slices.yml")
    #expect(try ByteCopy().run(&rounded) == false)
  }

  @Test("fuse-task-sum turns task arithmetic into one kernel over the loads")
  func fusion() throws {
    var g = try graph(Repository.parity + "/recipes/task_arithmetic.yml")
    try PassPipeline.standard().run(&g)
    #expect(g.nodes.count == 6)
    let fused = g[g[g.output].inputs[0]]
    guard case .fusedTaskSum(let w, let d, let l) = fused.op else {
      Issue.record("not fused: \(fused.op.name)")
      return
    }
    #expect(w == [1, -0.5, 0.2])
    #expect(d == nil)
    #expect(l == 0.8)
    var unfused = try graph(Repository.parity + "/recipes/task_arithmetic.yml")
    try PassPipeline.standard(fuse: false).run(&unfused)
    #expect(unfused.nodes.count == 13)
  }

  @Test("fuse-consensus turns TIES' final pass into one kernel, keeping the sort prefixes")
  func consensusFusion() throws {
    var g = try graph(Repository.parity + "/recipes/ties.yml")
    try PassPipeline.standard().run(&g)
    let fused = g[g[g.output].inputs[0]]
    guard case .fusedConsensus(let w, let scales, let normalize, let lambda) = fused.op else {
      Issue.record("not fused: \(fused.op.name)")
      return
    }
    #expect(w == [1, 0.2, 0.5])
    #expect(scales == [nil, 0.2, 0.5])
    #expect(normalize)
    #expect(lambda == nil)
    #expect(fused.inputs.count == 7)
    #expect(g.nodes.filter { $0.op.isReduction }.count == 3)
  }

  @Test("the verifier rejects a graph that uses a node before defining it")
  func verifier() throws {
    var g = try graph(Repository.parity + "/recipes/ties.yml")
    g.nodes[0] = Node(op: .taskVector, inputs: [NodeID(index: 5), NodeID(index: 6)])
    #expect(throws: PassError.self) { try GraphVerifier.verify(g, after: "test") }
  }

  @Test("the verifier checks what each operand is, not only how many there are")
  func operandKinds() throws {
    // TIES' model.norm.weight as lowered: %0-%3 loads (base %0), %4 τ₀, %5 its sort prefix,
    // %6 keep_top %4, %5, …
    let g = try graph(Repository.parity + "/recipes/ties.yml")
    try GraphVerifier.verify(g, after: "lowering")
    let tau = try #require(g.nodes.firstIndex { $0.op == .taskVector })
    let keep = try #require(g.nodes.firstIndex { $0.op == .keepTop })
    let prefix = g.nodes[keep].inputs[1]
    let otherTau = try #require(g.nodes.lastIndex { $0.op == .taskVector })
    #expect(otherTau != tau)
    func rejects(_ change: (inout TensorGraph) -> Void, _ reason: String) {
      var broken = g
      change(&broken)
      #expect(throws: PassError.self, "\(reason)") {
        try GraphVerifier.verify(broken, after: "test")
      }
    }
    // A keep_top whose mask is a task vector, not a sort prefix, kept everything before.
    rejects({ $0.nodes[keep].inputs[1] = NodeID(index: tau) }, "mask is not a sort prefix")
    // A sort prefix of other values selects positions that mean nothing here.
    rejects(
      { $0.nodes[keep].inputs[0] = NodeID(index: otherTau) }, "prefix of different values")
    rejects({ $0.nodes[0] = Node(op: .load(input: 9), inputs: []) }, "no input #9")
    rejects(
      { $0.nodes[prefix.index] = Node(op: .l1Norm, inputs: [NodeID(index: tau)]) },
      "an L1 norm is no sort prefix")
    rejects({ $0.output = NodeID(index: keep) }, "the output is not a store")
  }

  @Test(
    "optimized and unoptimized pipelines write identical files",
    arguments: [
      "linear_gradient", "task_arithmetic", "ties", "ties_bf16", "dare_ties", "della",
      "breadcrumbs",
      "passthrough_slices", "slerp", "sce",
    ])
  func equivalence(_ name: String) throws {
    let recipe = Repository.parity + "/recipes/\(name).yml"
    let dir = TemporaryDirectory()
    let options = RunOptions(threads: 2)
    for (folder, optimize, fuse) in [
      ("plain", false, true), ("nofuse", true, false), ("optimized", true, true),
    ] {
      let merge = try compileRecipe(recipe, optimize: optimize, fuse: fuse)
      _ = try MergeRunner.run(merge, output: dir.path + "/" + folder, options: options)
    }
    let plain = try folderBytes(dir.path + "/plain")
    #expect(plain == (try folderBytes(dir.path + "/optimized")))
    #expect(plain == (try folderBytes(dir.path + "/nofuse")))
  }
}
