import Foundation
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// The cost model prices the executor's buffers from the executor's own rules; these tests hold
/// the two to each other by running merges and comparing what was allocated.
@Suite struct FootprintTests {
  /// Runs `recipe` and returns (what the executor allocated, what was predicted), by tensor.
  func footprints(_ recipe: String, schedule: Schedule, threads: Int = 2) throws -> (
    actual: [TensorFootprint], predicted: [TensorFootprint]
  ) {
    let merge = try compileRecipe(recipe, seed: 42)
    var options = RunOptions(threads: threads)
    options.schedule = schedule
    options.footprints = FootprintLog()
    let dir = TemporaryDirectory()
    _ = try MergeRunner.run(merge, output: dir.path + "/out", options: options)
    // Every computation of the program: a multi-stage recipe's stage tensors too.
    let predicted = programSteps(merge).map {
      TensorExecutor.predictedFootprint(of: $0.graph, threads: threads, schedule: schedule)
    }
    let actual = options.footprints?.footprints ?? []
    return (actual.sorted { $0.tensor < $1.tensor }, predicted.sorted { $0.tensor < $1.tensor })
  }

  static let parityRecipes: [String] = {
    let folder = Repository.parity + "/recipes"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.filter { $0.hasSuffix(".yml") }.map { String($0.dropLast(4)) }.sorted()
  }()

  @Test(
    "on every parity recipe the executor allocates exactly the buffers merge plan prices",
    arguments: parityRecipes)
  func parity(_ name: String) throws {
    // The small schedule changes how selections share passes (multiBlock runs it too).
    let schedules = name.hasPrefix("breadcrumbs") ? [Schedule(), .small] : [Schedule()]
    for schedule in schedules {
      let (actual, predicted) = try footprints(
        Repository.parity + "/recipes/\(name).yml", schedule: schedule)
      #expect(!actual.isEmpty && actual.count == predicted.count)
      #expect(actual == predicted, "\(name)")
    }
  }

  @Test(
    "so do LoRA sources: the decoded factors are priced",
    arguments: ["lora_linear", "lora_task_arithmetic"])
  func lora(_ name: String) throws {
    let (actual, predicted) = try footprints(
      Repository.parity + "/lora-recipes/\(name).yml", schedule: Schedule())
    #expect(actual == predicted, "\(name)")
    // q_proj [64, 64] and v_proj [32, 64] of 4 layers: rank 4 · (rows + columns) f32 values.
    let factors = actual.map(\.adapterBytes).reduce(0, +)
    let expected = 4 * (4 * (64 + 64) + 4 * (32 + 64)) * 4
    #expect(factors == expected)
  }

  @Test("so do tensors of several blocks on two workers, selections together and apart")
  func multiBlock() throws {
    let models = try SyntheticModels()
    let ties = models.directory.write(
      "ties.yml",
      "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft0, parameters: {weight: 1, density: 0.4}}\n  - {model: ft1, parameters: {weight: 0.5, density: 0.7}}\ndtype: float32\n"
    )
    let della = models.directory.write(
      "della.yml",
      "merge_method: della\nbase_model: base\nmodels:\n  - {model: ft0, parameters: {weight: 1, density: 0.5}}\n  - {model: ft1, parameters: {weight: 1, density: 0.5}}\n"
    )
    let up = "model.layers.0.mlp.up_proj.weight"
    // Past the limit, groups of selections share passes that release the inputs.
    var grouped = Schedule()
    grouped.concurrentSelectionBytes = 1
    var gathers: [Int?] = []
    for (recipe, schedule) in [
      (ties, Schedule()), (ties, .small), (della, Schedule()), (ties, grouped),
    ] {
      let (actual, predicted) = try footprints(recipe, schedule: schedule)
      #expect(actual == predicted, "\(recipe)")
      #expect(actual.contains { $0.workers == 2 })
      gathers.append(actual.first { $0.tensor == up }?.gatherBytes)
    }
    // Not trivially equal: TIES' two selections share a pass in the default schedule and hold
    // both gathers at once; the small schedule selects one at a time; DELLA selects nothing.
    #expect(gathers == [2 * 300_000 * 4, 300_000 * 4, 0, 2 * 300_000 * 4])
  }

  @Test("selections past the limit share passes in groups that fit beside the released inputs")
  func selectionGroups() {
    let n = 32_768_000
    let one = TensorExecutor.selectionBytes(count: n)
    // The embeddings of the benchmark models: three selections, four bf16 inputs.
    #expect(
      TensorExecutor.selectionGroups(
        count: n, selections: 3, inputBytes: 4 * 2 * n, schedule: Schedule())
        == (2, true))
    // Under the limit, all together and nothing released; alone, nothing to group.
    #expect(
      TensorExecutor.selectionGroups(
        count: 1000, selections: 3, inputBytes: 8000, schedule: Schedule()) == (3, false))
    #expect(
      TensorExecutor.selectionGroups(
        count: n, selections: 1, inputBytes: 8 * n, schedule: Schedule()) == (1, false))
    // Inputs smaller than a selection: one at a time, as without groups.
    #expect(
      TensorExecutor.selectionGroups(
        count: n, selections: 3, inputBytes: one - 1, schedule: Schedule()) == (1, false))
    // The small schedule selects one at a time.
    #expect(
      TensorExecutor.selectionGroups(
        count: n, selections: 3, inputBytes: 8 * n, schedule: .small) == (1, false))
  }
}
