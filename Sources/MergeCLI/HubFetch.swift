import Dispatch
import MergeCompiler
import MergeHub
import MergeModel
import MergeRecipe

/// Hub repositories a compiled merge reads that are not downloaded yet: the commands that need
/// them whole (`merge run`) fetch them after the check, the others price them.
enum HubFetch {
  /// The repositories (models and LoRA adapters) of `merge`, its stages' included, read from
  /// the Hub rather than the cache (missing, or missing files), once each.
  static func missing(_ merge: CompiledMerge) -> [(HubRepositoryID, revision: String?)] {
    var seen: Set<String> = []
    var out: [(HubRepositoryID, revision: String?)] = []
    for model in merge.inputModels {
      let sources = [
        (model.folder.remote, model.reference.model.revision?.value),
        (model.adapter?.remote, model.reference.lora?.revision?.value),
      ]
      for case (let remote?, let revision) in sources
      where seen.insert(remote.repository.value + "@" + (revision ?? "main")).inserted {
        out.append((remote.repository, revision))
      }
    }
    return out
  }

  /// The bytes `merge run` would download for `merge`: the files of each model read from the
  /// Hub that a merge needs.
  static func downloadBytes(_ merge: CompiledMerge) -> Int {
    var seen: Set<String> = []
    var total = 0
    for model in merge.inputModels {
      for remote in [model.folder.remote, model.adapter?.remote].compactMap({ $0 })
      where seen.insert(remote.path).inserted {
        let names = HubDownloader.neededFiles(
          { remote.files[$0] != nil },
          index: remote.path == model.folder.path ? model.folder.weightMap : nil)
        total += remote.downloadBytes(of: names)
      }
    }
    return total
  }

  /// Downloads each missing repository of `merge` into the hub cache; false after reporting
  /// why one could not be.
  static func download(
    _ merge: CompiledMerge, options: CompileOptions, quiet: Bool, console: Console
  ) -> Bool {
    let repositories = missing(merge)
    guard !repositories.isEmpty else { return true }
    let downloader = HubDownloader(
      client: HubClient(settings: .fromEnvironment()), cache: options.hubCache)
    // On a terminal, one line that keeps count; otherwise a line per file.
    let live = console.standardErrorIsTerminal && !quiet
    let start = DispatchTime.now().uptimeNanoseconds
    let progress = HubDownloader.Progress { done, total in
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      let rate = seconds > 0 ? Double(done) / seconds : 0
      let left = rate > 0 ? Int((Double(total - done) / rate).rounded()) : 0
      console.err(
        "\r[download] \(formatBytes(done)) of \(formatBytes(total)), \(formatBytes(Int(rate)))/s, \(left) s left \u{1B}[K"
      )
    }
    for (repository, revision) in repositories {
      do {
        let snapshot = try downloader.download(
          repository, revision: revision,
          log: { line in if !quiet && !live { console.err(line + "\n") } },
          progress: live ? progress : nil)
        if live { console.err("\r\u{1B}[K") }
        if !quiet { console.err("\(repository): in \(snapshot)\n") }
      } catch {
        console.report(.downloadFailed(error))
        return false
      }
    }
    return true
  }
}

extension Diagnostic.Message {
  static func downloadFailed(_ error: ModelError) -> Self {
    Self("download-failed", "cannot download: \(error.description)")
  }
}
