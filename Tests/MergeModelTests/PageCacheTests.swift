import CMergeSupport
import Foundation
import Testing
import _TestSupport

@testable import MergeModel

/// What the run asks of the page cache before it maps a tensor's inputs.
struct PageCacheTests {
  /// Whether this kernel answers `cachestat` (Linux 6.5+); without it `isCached` asks `mincore`
  /// alone, and the test of the call itself is skipped.
  static let hasCachestat: Bool = {
    let fd = open("/proc/self/exe", O_RDONLY)
    defer { if fd >= 0 { close(fd) } }
    var cached: UInt64 = 0
    return fd >= 0 && merge_cached_pages(fd, 0, 4096, &cached) == 0
  }()

  @Test(
    "cachestat counts the pages of a range that are in the page cache",
    .enabled(if: hasCachestat, "needs a kernel with cachestat (Linux 6.5+)"))
  func cachestatCounts() throws {
    let dir = TemporaryDirectory()
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let path = dir.path + "/data"
    #expect(
      FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 64 * page)))
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0)
    defer { close(fd) }
    fsync(fd)
    func cached(_ first: Int, _ count: Int) -> UInt64? {
      var n: UInt64 = 0
      return merge_cached_pages(fd, first * page, count * page, &n) == 0 ? n : nil
    }
    #expect(cached(0, 64) == 64)
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    #expect(cached(0, 64) == 0)
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
    var buffer = [UInt8](repeating: 0, count: 8 * page)
    #expect(pread(fd, &buffer, buffer.count, off_t(8 * page)) == buffer.count)
    #expect(cached(0, 64) == 8)
    #expect(cached(8, 8) == 8)
    #expect(cached(4, 8) == 4)
    #expect(cached(16, 48) == 0)
  }

  @Test("a range is cached when every page of it is, by cachestat and by mincore alike")
  func cachedRanges() throws {
    let dir = TemporaryDirectory()
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let size = 64 * page
    let path = dir.path + "/data"
    #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: size)))
    let fd = open(path, O_RDONLY)
    #expect(fd >= 0)
    defer { close(fd) }
    fsync(fd)
    let file = try MappedFile(path: path)
    func both(_ range: Range<Int>) -> Bool? {
      let a = file.isCached(range)
      let b = file.isCached(range, cachestat: false)
      return a == b ? a : nil
    }
    // Just written: all of it is cached.
    #expect(both(0..<size) == true)
    // Dropped from the cache (clean pages, mapped by no one): none of it is.
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    #expect(both(0..<size) == false)
    #expect(both(page..<(page + 1)) == false)
    // Read back in part: ranges within it are cached, ranges that pass its end are not, and a
    // range that starts or ends inside a page counts that page.
    // (No read-ahead on this descriptor: only the pages read are brought in.)
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
    var buffer = [UInt8](repeating: 0, count: 8 * page)
    #expect(pread(fd, &buffer, buffer.count, off_t(8 * page)) == buffer.count)
    #expect(both((8 * page)..<(16 * page)) == true)
    #expect(both((8 * page + 100)..<(16 * page - 100)) == true)
    #expect(both((8 * page - 1)..<(16 * page)) == false)
    #expect(both((8 * page)..<(16 * page + 1)) == false)
    #expect(both(0..<size) == false)
    // Nothing to ask about is cached.
    #expect(both(5..<5) == true)
  }
}
