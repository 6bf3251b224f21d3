import Foundation
import Testing
import _TestSupport

@testable import MergeModel

@Suite struct SafetensorsHeaderTests {
  @Test(
    "each malformed header is rejected naming the file and the tensor",
    arguments: MalformedSafetensors.cases)
  func rejection(_ c: MalformedSafetensors.Case) throws {
    let dir = TemporaryDirectory()
    let path = dir.write("bad.safetensors", bytes: c.bytes)
    #expect {
      _ = try SafetensorsHeader(path: path)
    } throws: { error in
      guard let e = error as? ModelError else { return false }
      let text = e.description
      return text == "\(path): \(c.message)"
    }
  }

  @Test("a valid header is read with metadata, shapes and ranges")
  func validHeader() throws {
    let header =
      #"{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[],"data_offsets":[12,16]}}"#
    let h = try SafetensorsHeader(
      bytes: safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 16)), path: "x")
    #expect(h.tensors.map(\.name) == ["w", "b"])
    #expect(h.tensors[0].shape == [2, 3])
    #expect(h.tensors[0].count == 6)
    #expect(h.tensors[1].shape == [])
    #expect(h.tensors[1].count == 1)
    #expect(h.metadata.first?.0 == "format")
    #expect(h.dataOffset == 8 + header.utf8.count)
  }

  @Test("mutated headers never crash the reader")
  func fuzz() {
    let seconds = Double(ProcessInfo.processInfo.environment["FUZZ_SECONDS"] ?? "") ?? 2
    let valid = safetensorsBytes(
      header:
        #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}"#,
      data: [UInt8](repeating: 1, count: 24))
    let pieces = Array(#"{}[],:"0123456789-eE.FBIU_ dtypeshapedata_offsets__metadata__\"#.utf8)
    var rng = SplitMix64(state: UInt64(Date().timeIntervalSince1970))
    let deadline = Date().addingTimeInterval(seconds)
    var iterations = 0
    var accepted = 0
    while Date() < deadline {
      var bytes = valid
      for _ in 0..<Int.random(in: 1...8, using: &rng) {
        let i = Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: bytes[i] = pieces.randomElement(using: &rng) ?? 0
        case 1: bytes[i] = UInt8.random(in: 0...255, using: &rng)
        case 2: bytes.remove(at: i)
        default: bytes.insert(pieces.randomElement(using: &rng) ?? 0, at: i)
        }
        if bytes.isEmpty { break }
      }
      if (try? SafetensorsHeader(bytes: bytes, path: "fuzz")) != nil { accepted += 1 }
      iterations += 1
    }
    print("header fuzz: \(iterations) inputs in \(seconds) s, \(accepted) accepted")
    #expect(iterations > 1000)
  }
}
