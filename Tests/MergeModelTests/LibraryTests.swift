import CMergeSupport
import Foundation
import Testing

/// Libraries merge opens on first use (LAPACKE, libcurl) rather than links.
struct LibraryTests {
  func open(_ names: [String]) -> (loaded: Bool, error: String) {
    var error = [CChar](repeating: 0, count: 256)
    let copies = names.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let handle = copies.map { UnsafePointer($0) }.withUnsafeBufferPointer {
      merge_open_library($0.baseAddress, Int32(names.count), &error, error.count)
    }
    return (
      handle != nil, String(decoding: error.prefix { $0 != 0 }.map(UInt8.init), as: UTF8.self)
    )
  }

  @Test("the first name that loads is opened; when none does, why the first failed is said")
  func firstThatLoads() {
    let found = open(["libmerge-absent.so.9", "libc.so.6"])
    #expect(found.loaded)
    let none = open(["libmerge-absent.so.9", "libmerge-absent.so"])
    #expect(!none.loaded)
    #expect(none.error.contains("libmerge-absent.so.9"), "\(none.error)")
    #expect(!none.error.contains("libmerge-absent.so:"), "\(none.error)")
    // A message longer than the buffer is cut, still terminated.
    var short = [CChar](repeating: 1, count: 8)
    let name = strdup("libmerge-absent.so.9")
    defer { free(name) }
    var names = [UnsafePointer(name)]
    #expect(merge_open_library(&names, 1, &short, short.count) == nil)
    #expect(short.firstIndex(of: 0) == 7)
  }
}
