import Foundation
import MergeFuzz
import Testing
import _TestSupport

/// The fuzz corpus (Scripts/fuzz/corpus) replayed through the fuzz targets: every seed and
/// every past finding keeps passing, in each test run, without libFuzzer.
@Suite struct FuzzCorpusTests {
  static func corpus(_ target: FuzzTarget) throws -> [String] {
    let folder = Repository.root + "/Scripts/fuzz/corpus/" + target.rawValue
    return try FileManager.default.contentsOfDirectory(atPath: folder).sorted().map {
      folder + "/" + $0
    }
  }

  @Test("the recipe corpus compiles without a crash, every diagnostic located inside its text")
  func recipes() throws {
    let files = try Self.corpus(.recipe)
    #expect(files.count >= 43)
    for file in files {
      let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
      #expect(FuzzTarget.recipe.check(bytes) == [], "\(file)")
    }
  }

  @Test("the header corpus: both readers agree on every input, valid or not")
  func headers() throws {
    let files = try Self.corpus(.header)
    #expect(files.count >= 11)
    for file in files {
      let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
      #expect(FuzzTarget.header.check(bytes) == [], "\(file)")
    }
  }

  @Test("the checkpoint corpus reads without a crash, every tensor inside its file")
  func checkpoints() throws {
    let files = try Self.corpus(.checkpoint)
    #expect(files.count >= 4)
    for file in files {
      let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
      #expect(FuzzTarget.checkpoint.check(bytes) == [], "\(file)")
    }
  }
}
