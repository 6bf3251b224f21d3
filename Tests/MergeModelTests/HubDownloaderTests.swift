import Foundation
import MergeHub
import MergeModel
import Synchronization
import Testing
import _TestSupport

/// The downloader used directly, against the local Hub server.
@Suite(.enabled(if: HubServer.available, "needs python3 for the local Hub server"))
struct HubDownloaderTests {
  @Test(
    "progress counts every byte fetched, ends at the total, and a second download fetches nothing")
  func progress() throws {
    let dir = TemporaryDirectory()
    let server = try HubServer(
      repos: ["tiny-org/llama-base": (Repository.tinyLlama + "/base", false, false)], in: dir)
    let downloader = HubDownloader(
      client: HubClient(settings: HubSettings(endpoint: server.endpoint)),
      cache: HubCache(path: dir.path + "/cache"))
    let repository = try #require(HubRepositoryID("tiny-org/llama-base"))
    let reports = Mutex<[(Int, Int)]>([])
    let progress = HubDownloader.Progress { done, total in
      reports.withLock { $0.append((done, total)) }
    }
    let snapshot = try downloader.download(repository, revision: nil, progress: progress)
    var expected = 0
    for name in [
      "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
      "tokenizer_config.json",
    ] {
      expected += try FileSystem.size(of: Repository.tinyLlama + "/base/" + name)
      #expect(
        FileManager.default.contents(atPath: snapshot + "/" + name)
          == FileManager.default.contents(atPath: Repository.tinyLlama + "/base/" + name))
    }
    let last = try #require(reports.withLock { $0.last })
    #expect(last.0 == expected && last.1 == expected)
    #expect(reports.withLock { $0.allSatisfy { $0.0 <= $0.1 } })
    // Everything is there now: nothing more to fetch, nothing reported.
    let again = Mutex<Int>(0)
    _ = try downloader.download(
      repository, revision: nil,
      progress: HubDownloader.Progress { _, _ in again.withLock { $0 += 1 } })
    #expect(again.withLock { $0 } == 0)
  }
}
