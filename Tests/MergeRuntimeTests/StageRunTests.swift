import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// Multi-stage recipes run as one program: the same bytes as the stages run one after another
/// through disk, nothing written but the output (unless asked), stage tensors cached by their
/// content, the same bytes on any thread count.
@Suite struct StageRunTests {
  /// A two-stage recipe: a linear `mid` (weight `w` for ft0), then TIES over it.
  static func twoStage(_ w: Double = 0.6, mid: String = "mid") -> String {
    """
    name: \(mid)
    merge_method: linear
    models:
      - model: models/ft0
        parameters: {weight: \(w)}
      - model: models/ft1
        parameters: {weight: 0.4}
    dtype: float32
    out_dtype: bfloat16
    ---
    merge_method: ties
    base_model: models/base
    models:
      - model: \(mid)
        parameters: {weight: 0.7, density: 0.6}
      - model: models/ft2
        parameters: {weight: 0.5, density: 0.4}
    dtype: float32
    """
  }

  func run(
    _ recipe: String, _ output: String, threads: Int = 2, cache: ReductionCache? = nil,
    intermediates: String? = nil
  ) throws {
    var compile = CompileOptions()
    compile.allStageTensors = intermediates != nil
    let compilation = Compiler.compile(path: recipe, options: compile)
    guard let merge = compilation.merge else {
      throw MergeFailure(description: "\(compilation.diagnostics.map(\.message.text))")
    }
    var options = RunOptions(threads: threads)
    options.cache = cache
    options.intermediates = intermediates
    _ = try MergeRunner.run(merge, output: output, options: options)
  }

  /// Every path under `root`, relative, with each file's size.
  func listing(_ root: String) -> [String: Int] {
    var out: [String: Int] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let path = enumerator?.nextObject() as? String {
      let attributes = try? FileManager.default.attributesOfItem(atPath: root + "/" + path)
      out[path] = (attributes?[.size] as? Int) ?? -1
    }
    return out
  }

  @Test("the program gives the bytes of its stages run one after another through disk")
  func sameAsThroughDisk() throws {
    let workspace = ModelWorkspace()
    let text = Self.twoStage()
    try run(workspace.recipe(text, name: "two.yml"), workspace.path("program"))
    // The same stages as two recipes, the second reading the first's folder.
    let parts = text.components(separatedBy: "---\n")
    try run(workspace.recipe(parts[0], name: "one.yml"), workspace.path("mid"))
    // 'mid' is now the folder the first run wrote.
    try run(workspace.recipe(parts[1], name: "final.yml"), workspace.path("disk"))
    let program = try folderBytes(workspace.path("program"))
    let disk = try folderBytes(workspace.path("disk"))
    #expect(program["model.safetensors"] == disk["model.safetensors"])
    #expect(program["config.json"] == disk["config.json"])
    #expect(program["tokenizer.json"] == disk["tokenizer.json"])
    // The intermediate is bf16 on disk (its out_dtype): the program rounds it the same way.
    let mid = try loadTensors(workspace.path("mid"))
    #expect(mid["model.norm.weight"]?.dtype == .bfloat16)
  }

  @Test("a run writes its output and nothing else: no intermediate folder, nothing left beside it")
  func writesOnlyOutput() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(Self.twoStage())
    let models = Repository.tinyLlama
    let before = listing(workspace.directory.path)
    let modelsBefore = listing(models)
    try run(recipe, workspace.path("out"))
    var after = listing(workspace.directory.path)
    let output = after.keys.filter { $0 == "out" || $0.hasPrefix("out/") }
    let files = [
      "config.json", "mergekit_config.yml", "model.safetensors", "README.md", "tokenizer.json",
      "tokenizer_config.json", "generation_config.json",
    ]
    let expected: Set<String> = Set(["out"] + files.map { "out/" + $0 })
    #expect(Set(output) == expected)
    for o in output { after.removeValue(forKey: o) }
    #expect(after == before)
    #expect(listing(models) == modelsBefore)
  }

  @Test("--intermediates writes each named stage as the folder a one-stage run writes")
  func intermediates() throws {
    let workspace = ModelWorkspace()
    let text = Self.twoStage()
    try run(
      workspace.recipe(text), workspace.path("out"), intermediates: workspace.path("stages"))
    #expect(
      Set(try FileManager.default.contentsOfDirectory(atPath: workspace.path("stages"))) == ["mid"])
    let parts = text.components(separatedBy: "---\n")
    try run(workspace.recipe(parts[0], name: "one.yml"), workspace.path("alone"))
    let stage = try folderBytes(workspace.path("stages/mid"))
    let alone = try folderBytes(workspace.path("alone"))
    for name in ["model.safetensors", "config.json", "tokenizer.json", "mergekit_config.yml"] {
      #expect(stage[name] != nil && stage[name] == alone[name], "\(name)")
    }
    // The output is what a run without them writes.
    try run(workspace.recipe(text, name: "again.yml"), workspace.path("plain"))
    #expect(
      try folderBytes(workspace.path("out"))["model.safetensors"]
        == (try folderBytes(workspace.path("plain"))["model.safetensors"]))
  }

  @Test("an intermediate folder that is not a merge output refuses the run before any work")
  func intermediatesRefused() throws {
    let workspace = ModelWorkspace()
    workspace.directory.write("stages/mid/notes.txt", "mine")
    #expect(throws: RunError.self) {
      try run(
        workspace.recipe(Self.twoStage()), workspace.path("out"),
        intermediates: workspace.path("stages"))
    }
    #expect(FileManager.default.fileExists(atPath: workspace.path("stages/mid/notes.txt")))
    #expect(!FileManager.default.fileExists(atPath: workspace.path("out")))
    #expect(listing(workspace.path("stages")).keys.sorted() == ["mid", "mid/notes.txt"])
  }

  @Test("the same bytes on one thread and on two")
  func threads() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(Self.twoStage())
    try run(recipe, workspace.path("t1"), threads: 1)
    try run(recipe, workspace.path("t2"), threads: 2)
    #expect(
      try folderBytes(workspace.path("t1"))["model.safetensors"]
        == (try folderBytes(workspace.path("t2"))["model.safetensors"]))
  }

  @Test("reductions over a stage's tensors are cached by what computed them")
  func cacheKeys() throws {
    let workspace = ModelWorkspace()
    let cacheDir = workspace.path("cache")
    let first = ReductionCache(directory: cacheDir)
    try run(workspace.recipe(Self.twoStage(0.6), name: "a.yml"), workspace.path("a"), cache: first)
    #expect(first.statistics == (hits: 0, misses: 78))
    let second = ReductionCache(directory: cacheDir)
    try run(
      workspace.recipe(Self.twoStage(0.6), name: "a.yml"), workspace.path("a2"), cache: second)
    #expect(second.statistics == (hits: 78, misses: 0))
    // Another weight in the first stage changes its tensors: TIES over them is recomputed
    // (ft2's selections are reused), and the result is a cold run's.
    let third = ReductionCache(directory: cacheDir)
    try run(workspace.recipe(Self.twoStage(0.9), name: "b.yml"), workspace.path("b"), cache: third)
    #expect(third.statistics == (hits: 39, misses: 39))
    try run(workspace.recipe(Self.twoStage(0.9), name: "b.yml"), workspace.path("cold"))
    #expect(
      try folderBytes(workspace.path("b"))["model.safetensors"]
        == (try folderBytes(workspace.path("cold"))["model.safetensors"]))
    // The stage's name is not its content: renamed, it hits.
    let fourth = ReductionCache(directory: cacheDir)
    try run(
      workspace.recipe(Self.twoStage(0.9, mid: "other"), name: "c.yml"), workspace.path("c"),
      cache: fourth)
    #expect(fourth.statistics == (hits: 78, misses: 0))
  }

  @Test("a passthrough of a stage's tensors writes them straight to the output, never held")
  func forwarding() throws {
    let merge = try compileRecipe(Repository.parity + "/recipes/multi_three_stage.yml")
    let steps = programSteps(merge)
    // 'stacked' copies tensors of 'tuned' (its embeddings and layers 0–2): each is computed
    // by tuned's graph into the output; blend's tensors are held until tuned's step reads them.
    let tuned = try #require(merge.stage("tuned"))
    #expect(tuned.graphs.count == 28)
    #expect(steps.filter { $0.stage == "tuned" }.isEmpty)
    #expect(steps.filter { $0.stage == "blend" }.count == 28)
    #expect(steps.filter { $0.stage == nil }.count == merge.graphs.count)
    #expect(
      Set(steps.filter { $0.stage == nil }.map(\.name)) == Set(merge.plan.tensors.map(\.name)))
    // At most one stage tensor is held at a time: blend's embeddings, 1024 × 64 f32.
    #expect(steps.map(\.heldBytes).max() == 1024 * 64 * 4)
    #expect(steps.allSatisfy { $0.releases.count <= 1 })
  }

  @Test("multi-stage side files are mergekit-multi's: the donor chain's tokenizer and config")
  func sideFiles() throws {
    let dir = TemporaryDirectory()
    try runRecipe(Repository.parity + "/recipes/multi_three_stage.yml", output: dir.path + "/out")
    let expected = Repository.parity + "/expected/multi_three_stage"
    for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
      #expect(
        try Data(contentsOf: URL(fileURLWithPath: dir.path + "/out/" + name))
          == (try Data(contentsOf: URL(fileURLWithPath: expected + "/" + name))), "\(name)")
    }
  }
}
