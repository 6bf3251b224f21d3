import MergeCompiler
import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The model folders of a multi-stage recipe's intermediate stages, which a run writes with
/// `--intermediates DIR` as mergekit-multi writes them: `DIR/<stage name>`, each a whole
/// model (weights, config.json, tokenizer files, recipe and card), committed with the output
/// and discarded with it when the run fails.
final class StageOutputs {
  let merge: CompiledMerge
  let folders: [String: OutputFolder]
  let writers: [String: SafetensorsWriter]
  let layouts: [String: ShardLayout]
  let contents: MergeRunner.OutputContents
  /// The folder `DIR`, when this run created it (removed again if the run fails).
  let createdDirectory: String?

  /// Prepares `directory/<name>` for every stage of `merge` (compiled with every stage
  /// tensor), refusing what ``OutputFolder`` refuses and any folder inside an input.
  init(_ merge: CompiledMerge, directory: String, options: RunOptions) throws(ModelError) {
    for stage in merge.stages where stage.graphs.count != stage.plan.tensors.count {
      throw .outputRefused(
        path: FileSystem.join(directory, stage.name),
        reason: "the merge was compiled without every tensor of stage '\(stage.name)'")
    }
    var created: String?
    if FileSystem.kind(of: directory) == .missing {
      try FileSystem.makeDirectories(directory)
      created = directory
    }
    var folders: [String: OutputFolder] = [:]
    var writers: [String: SafetensorsWriter] = [:]
    var layouts: [String: ShardLayout] = [:]
    do throws(ModelError) {
      for stage in merge.stages {
        let destination = FileSystem.join(directory, stage.name)
        try MergeRunner.requireOutsideInputs(destination, merge.inputModels)
        let folder = try OutputFolder(
          destination: destination,
          existing: options.replaceExisting ? .replaceMergeOutput : .refuse)
        folders[stage.name] = folder
        let layout = MergeRunner.layout(stage.plan, options: options)
        layouts[stage.name] = layout
        writers[stage.name] = try SafetensorsWriter(folder: folder, layout: layout)
      }
    } catch {
      for folder in folders.values { folder.discard() }
      if let created { rmdir(created) }
      throw error
    }
    self.merge = merge
    self.folders = folders
    self.writers = writers
    self.layouts = layouts
    self.contents = options.contents
    self.createdDirectory = created
  }

  /// Finishes every stage's weights, writes its other files and commits it.
  func finish() throws(ModelError) {
    for stage in merge.stages {
      guard let writer = writers[stage.name], let folder = folders[stage.name],
        let layout = layouts[stage.name]
      else { continue }
      try writer.finish()
      try MergeRunner.write(
        MergeRunner.sideFiles(
          stage.plan, recipeText: stage.recipeText, seed: merge.seed, layout: layout,
          contents: contents), to: folder)
    }
    for stage in merge.stages { try folders[stage.name]?.commit() }
  }

  /// Leaves every stage folder as it was (and removes `DIR` if this run created it).
  func discard() {
    for folder in folders.values { folder.discard() }
    if let createdDirectory { rmdir(createdDirectory) }
  }
}
