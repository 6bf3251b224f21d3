import Foundation
import MergeCompiler
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeRuntime

/// The cost model (`merge plan`) and the schedules `merge run --max-memory` chooses between.
@Suite struct CostTests {
  static func estimate(_ merge: CompiledMerge, _ options: RunOptions) -> MergeCost {
    let layout = MergeRunner.layout(merge.plan, options: options)
    return MergeCost.estimate(
      merge, layout: layout,
      outputFiles: MergeRunner.sideFileBytes(
        merge.plan, recipeText: merge.recipeText, seed: merge.seed, layout: layout),
      options: options, constants: .defaults, baselineBytes: 0, startupSeconds: 0)
  }

  static func folderSize(_ path: String) throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: path).reduce(0) {
      $0 + (try FileSystem.size(of: path + "/" + $1))
    }
  }

  @Test(
    "the predicted bytes written are the output folder's size, to the byte, sharded or not",
    arguments: ["ties_bf16", "slerp", "passthrough_slices", "task_arithmetic"])
  func bytesWritten(recipe: String) throws {
    let path = Repository.parity + "/recipes/\(recipe).yml"
    let merge = try compileRecipe(path)
    for shardSize in [0, 200_000] {
      let dir = TemporaryDirectory()
      _ = try runRecipe(path, output: dir.path + "/out", shardSize: shardSize)
      let cost = Self.estimate(merge, RunOptions(threads: 2, shardSize: shardSize))
      #expect(cost.bytesWritten == (try Self.folderSize(dir.path + "/out")), "\(recipe)")
      let shards = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out")
        .filter { $0.hasSuffix(".safetensors") }.count
      #expect(cost.shards == shards)
      #expect(shardSize == 0 ? shards == 1 : shards > 1)
    }
  }

  @Test("pricing a merge maps no weights file, and counts every input byte each pass reads")
  func readsNoData() throws {
    let merge = try compileRecipe(Repository.parity + "/recipes/ties.yml")
    let plan = merge.plan
    let cost = Self.estimate(merge, RunOptions(threads: 2))
    #expect(plan.models.allSatisfy { $0.weights.files.allSatisfy { !$0.isMapped } })
    // TIES makes a selection pass per fine-tune (reading it and the base), then the merge
    // pass over every input: between 2 and 4 times the input bytes for 2 or 3 fine-tunes.
    let inputs = plan.tensors.reduce(0) { $0 + $1.inputs.reduce(0) { $0 + $1.info.byteCount } }
    #expect(cost.inputBytes == inputs)
    #expect(cost.bytesRead > 2 * inputs && cost.bytesRead < 4 * inputs)
    #expect(cost.tensors.count == plan.tensors.count)
    #expect(cost.estimatedSeconds > 0)
  }

  @Test("merge plan --partitions: the partitions' shards, bytes and reads add up to the whole run")
  func partitions() throws {
    let merge = try compileRecipe(Repository.parity + "/recipes/ties.yml")
    let options = RunOptions(threads: 2, shardSize: 200_000)
    let whole = Self.estimate(merge, options)
    let parts = MergeCost.partitions(
      4, of: merge, options: options, constants: .defaults, baselineBytes: 0, startupSeconds: 0)
    #expect(parts.count == 4)
    #expect(parts.reduce(0) { $0 + $1.shards } == whole.shards && whole.shards == 7)
    #expect(parts.reduce(0) { $0 + $1.bytesWritten } == whole.bytesWritten)
    #expect(parts.reduce(0) { $0 + $1.inputBytes } == whole.inputBytes)
    #expect(parts.reduce(0) { $0 + $1.tensors.count } == whole.tensors.count)
    // Dealt by bytes: no partition writes more than the largest shard beyond any other's.
    let layout = MergeRunner.layout(merge.plan, options: options)
    let largest = layout.shards.map(\.fileSize).max() ?? 0
    let sizes = Partition.assign(layout, count: 4).map {
      $0.reduce(0) { $0 + layout.shards[$1].fileSize }
    }
    #expect((sizes.max() ?? 0) - (sizes.min() ?? 0) <= largest)
  }

  @Test("a task-vector source is priced: its stored bytes read, a sparse one's entries held")
  func taskVectorSources() throws {
    let workspace = ModelWorkspace()
    for density in [1.0, 0.1] {
      let name = density < 1 ? "tau-sparse" : "tau"
      _ = try TaskVectors.diff(
        base: workspace.path("models/base"), finetuned: workspace.path("models/ft0"),
        output: workspace.path(name), density: density, dtype: nil)
      let plain = try compileRecipe(
        workspace.recipe(
          "merge_method: linear\nmodels:\n  - {model: models/ft0, parameters: {weight: 1}}\ndtype: float32\n",
          name: "plain.yml"))
      let merge = try compileRecipe(
        workspace.recipe(
          "merge_method: linear\nmodels:\n  - {model: models/base+\(name), parameters: {weight: 1}}\ndtype: float32\n",
          name: "\(name).yml"))
      let tv = try #require(merge.plan.models.first?.taskVector)
      let stored = tv.weights.byteCount
      let base = Self.estimate(plain, RunOptions(threads: 2))
      let cost = Self.estimate(merge, RunOptions(threads: 2))
      // ft0 and the base have the same tensors, so the difference is the task vector's file.
      #expect(cost.inputBytes == base.inputBytes + stored, "\(name)")
      #expect(cost.bytesRead == base.bytesRead + stored, "\(name)")
      // The working set grows: the τ pages mapped (dense), or its entries held (sparse).
      let peak = { (c: MergeCost) in c.tensors.map(\.workingSetBytes).max() ?? 0 }
      #expect(peak(cost) > peak(base), "\(name)")
    }
  }

  @Test("the small schedule prices below the default one, for every method family")
  func smallIsSmaller() throws {
    for recipe in ["ties", "task_arithmetic", "slerp", "breadcrumbs", "dare_ties"] {
      let merge = try compileRecipe(Repository.parity + "/recipes/\(recipe).yml")
      var options = RunOptions(threads: 2)
      let normal = Self.estimate(merge, options)
      options.schedule = .small
      let small = Self.estimate(merge, options)
      #expect(small.peakMemoryBytes < normal.peakMemoryBytes, "\(recipe)")
      #expect(small.bytesWritten == normal.bytesWritten)
    }
  }

  @Test(
    "every schedule gives the same bytes: pages released after each block, selections one at a time, nothing read ahead"
  )
  func schedulesAgree() throws {
    var tiny = Schedule.small
    tiny.releaseWindow = 1
    let recipes = [
      "ties", "ties_bf16", "breadcrumbs", "slerp", "task_arithmetic", "dare_ties", "nearswap",
      "model_stock",
    ]
    for recipe in recipes {
      let path = Repository.parity + "/recipes/\(recipe).yml"
      let dir = TemporaryDirectory()
      _ = try runRecipe(path, output: dir.path + "/a")
      _ = try runRecipe(path, output: dir.path + "/b", schedule: tiny)
      #expect(try folderBytes(dir.path + "/a") == folderBytes(dir.path + "/b"), "\(recipe)")
    }
    // Tensors of several blocks, so that pages are released between windows.
    let models = try SyntheticModels()
    for method in ["ties", "slerp"] {
      let recipe = models.directory.write(
        "\(method).yml",
        method == "ties"
          ? "merge_method: ties\nbase_model: base\nmodels:\n  - {model: ft0, parameters: {weight: 1, density: 0.4}}\n  - {model: ft1, parameters: {weight: 0.5, density: 0.7}}\ndtype: float32\n"
          : "merge_method: slerp\nbase_model: base\nmodels: [{model: base}, {model: ft2}]\nparameters: {t: 0.3}\n"
      )
      _ = try runRecipe(recipe, output: models.directory.path + "/\(method)-a")
      _ = try runRecipe(recipe, output: models.directory.path + "/\(method)-b", schedule: tiny)
      #expect(
        try folderBytes(models.directory.path + "/\(method)-a")
          == folderBytes(models.directory.path + "/\(method)-b"), "\(method)")
    }
  }

  @Test("calibration constants round-trip through the cache folder; a damaged file means defaults")
  func constantsFile() throws {
    let dir = TemporaryDirectory()
    #expect(CostConstants.load(from: dir.path) == .defaults)
    var c = CostConstants.defaults
    c.passNanoseconds = 0.123
    c.selectNanoseconds = 45.5
    c.diskBytesPerSecond = 3e8
    c.calibrated = true
    try c.save(to: dir.path + "/nested/cache")
    #expect(CostConstants.load(from: dir.path + "/nested/cache") == c)
    dir.write("nested/cache/calibration.json", "{\"pass_ns_per_element\": \"fast\"}")
    #expect(CostConstants.load(from: dir.path + "/nested/cache") == .defaults)
    // A calibration killed mid-way leaves its scratch folder; the next one removes it, not
    // the folder of one still running (this process).
    dir.write("calibration-2147483646/base/config.json", "{}")
    dir.write("calibration-\(getpid())/base/config.json", "{}")
    let scratch = Calibration.scratch(in: dir.path)
    #expect(scratch == dir.path + "/calibration-\(getpid())")
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/calibration-2147483646"))
    #expect(FileManager.default.fileExists(atPath: dir.path + "/calibration-\(getpid())"))
  }
}
