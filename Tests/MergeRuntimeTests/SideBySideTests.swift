import Foundation
import MergeModel
import Synchronization
import Testing
import _TestSupport

@testable import MergeRuntime

/// Tensors computed two at a time.
@Suite struct SideBySideTests {
  static func recipe(_ name: String) -> String { Repository.parity + "/recipes/\(name).yml" }

  /// Generated Llama-shaped models with a large vocabulary: the embeddings' working set is
  /// several times a layer tensor's, so layer tensors pair up (the parity models' tensors are
  /// all about the size of the workers' block buffers, and none pair).
  static let models: (folder: TemporaryDirectory, recipe: String) = {
    let folder = TemporaryDirectory()
    _ = try? SyntheticLlama.write(to: folder.path, layers: 2, hidden: 128, vocab: 16000)
    let recipe = folder.path + "/ties.yml"
    let text = """
      merge_method: ties
      base_model: \(folder.path)/base
      models:
        - model: \(folder.path)/ft0
          parameters: {weight: 0.3, density: 0.5}
        - model: \(folder.path)/ft1
          parameters: {weight: 0.3, density: 0.5}
        - model: \(folder.path)/ft2
          parameters: {weight: 0.3, density: 0.5}
      dtype: bfloat16

      """
    try? text.write(toFile: recipe, atomically: true, encoding: .utf8)
    return (folder, recipe)
  }()

  @Test(
    "plain tensors run two at a time while their working sets fit the largest; stage tensors alone")
  func admission() throws {
    let merge = try compileRecipe(Self.models.recipe, seed: 1)
    let steps = programSteps(merge)
    let sides = SideBySide(steps, merge: merge, options: RunOptions(threads: 2))
    #expect(sides.plain.allSatisfy { $0 })
    // The budget is what one step holds at most: its working set and the next step's inputs,
    // which it maps when it starts.
    #expect(sides.budget == zip(sides.workingSet, sides.readAhead).map { $0 + $1 }.max())
    #expect(sides.workingSet.allSatisfy { $0 > 0 })
    #expect(sides.readAhead.last == 0)
    #expect(sides.readAhead.dropLast().allSatisfy { $0 > 0 })
    // A step that maps a large next one counts it: each pair is admitted exactly when both
    // working sets and that read-ahead fit.
    for i in steps.indices {
      for j in steps.indices where j != i {
        #expect(
          sides.admits(i, running: [j])
            == (sides.workingSet[i] + sides.readAhead[i] + sides.workingSet[j] <= sides.budget))
      }
    }
    let largest = try #require(
      sides.workingSet.indices.max { sides.workingSet[$0] < sides.workingSet[$1] })
    let smallest = try #require(
      sides.workingSet.indices.min { sides.workingSet[$0] < sides.workingSet[$1] })
    let other = try #require(
      steps.indices.filter { $0 != smallest && $0 != largest }
        .min { sides.workingSet[$0] < sides.workingSet[$1] })
    // Nothing runs beside the largest tensor; two small ones run together, never three.
    #expect(sides.admits(largest, running: []))
    #expect(!sides.admits(largest, running: [smallest]))
    #expect(!sides.admits(smallest, running: [largest]))
    #expect(sides.workingSet[smallest] + sides.workingSet[other] <= sides.budget)
    #expect(sides.admits(smallest, running: [other]))
    #expect(!sides.admits(smallest, running: [other, other]))

    // The smallest schedule computes one tensor at a time.
    var small = RunOptions(threads: 2)
    small.schedule = .small
    let alone = SideBySide(steps, merge: merge, options: small)
    #expect(!alone.admits(smallest, running: [other]))

    // A multi-stage program: the stage tensors, and the tensors that read them, run alone.
    let staged = try compileRecipe(Self.recipe("multi_two_stage"), seed: 1)
    let stagedSteps = programSteps(staged)
    let stagedSides = SideBySide(stagedSteps, merge: staged, options: RunOptions(threads: 2))
    for (i, step) in stagedSteps.enumerated() {
      let readsStage = step.graph.plan.inputs.contains { step.models[$0.model].stage != nil }
      #expect(stagedSides.plain[i] == (step.stage == nil && !readsStage && step.releases.isEmpty))
      if !stagedSides.plain[i] {
        #expect(!stagedSides.admits(i, running: [(i + 1) % stagedSteps.count]))
      }
    }
    #expect(stagedSides.plain.contains(false))
  }

  @Test("every step runs once, two overlap, and an error stops the steps after it")
  func running() throws {
    let merge = try compileRecipe(Self.models.recipe, seed: 1)
    let steps = programSteps(merge)
    let sides = SideBySide(steps, merge: merge, options: RunOptions(threads: 2))
    let ran = Mutex<[Int]>([])
    let most = try sides.forEachStep(steps.count, cancellation: nil) { i in
      usleep(2_000)
      ran.withLock { $0.append(i) }
    }
    #expect(most == 2)
    #expect(ran.withLock { $0.sorted() } == Array(steps.indices))

    let started = Mutex<[Int]>([])
    #expect(throws: RunError.self) {
      try sides.forEachStep(steps.count, cancellation: nil) { i throws(RunError) in
        started.withLock { $0.append(i) }
        // The failing step fails at once; the one beside it cannot finish first and let a
        // third start.
        if i == 3 { throw .execution(ExecutionError(tensor: "t", reason: "failed")) }
        usleep(20_000)
      }
    }
    // At most the step beside the failing one started after it.
    #expect(started.withLock { $0.max() ?? 0 } <= 4)
  }

  @Test(
    "the bytes are the same with tensors side by side and one at a time, selections grouped or not",
    arguments: ["generated", "multi_two_stage", "passthrough_slices"])
  func sameBytes(_ name: String) throws {
    let merge = try compileRecipe(
      name == "generated" ? Self.models.recipe : Self.recipe(name), seed: 3)
    let dir = TemporaryDirectory()
    var outputs: [[UInt8]] = []
    var grouped = Schedule()
    // Past this limit, every tensor's selections share passes in groups that release inputs.
    grouped.concurrentSelectionBytes = 1
    for (k, schedule) in [Schedule(), .small, grouped].enumerated() {
      var options = RunOptions(threads: 2)
      options.schedule = schedule
      let out = dir.path + "/out-\(k)"
      _ = try MergeRunner.run(merge, output: out, options: options)
      let shards = try FileManager.default.contentsOfDirectory(atPath: out)
        .filter { $0.hasSuffix(".safetensors") }.sorted()
      #expect(!shards.isEmpty)
      outputs.append(
        try shards.flatMap { Array(try Data(contentsOf: URL(fileURLWithPath: out + "/" + $0))) })
    }
    #expect(outputs.count == 3)
    #expect(outputs[0] == outputs[1])
    #expect(outputs[0] == outputs[2])
  }
}
