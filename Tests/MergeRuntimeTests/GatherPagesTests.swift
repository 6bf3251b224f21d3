import Testing

@testable import MergeRuntime

/// The pool of gather buffers' mappings: what it keeps, what it hands back, what it unmaps.
///
/// Each test has its own pool (the shared one serves concurrent runs).
struct GatherPagesTests {
  @Test("a freed reusable buffer's mapping serves the next pass that fits in it")
  func reusesFittingMappings() {
    let pool = GatherPages()
    var first = PageBuffer<Float>.many(2, count: 1000, reusable: true, pool: pool)
    let starts = Set(first.map { UnsafeMutableRawPointer($0.pointer) })
    first = []
    #expect(pool.keptBytes == 8000)
    // A smaller pass takes one of them (a gather writes every element before it is read) and
    // leaves the other: it maps nothing fresh.
    let second = PageBuffer<Float>.many(1, count: 900, reusable: true, pool: pool)
    #expect(starts.contains(UnsafeMutableRawPointer(second[0].pointer)))
    #expect(pool.keptBytes == 4000)
    // A larger one fits in neither: the kept mapping is unmapped before its own are mapped.
    let third = PageBuffer<Float>.many(1, count: 5000, reusable: true, pool: pool)
    #expect(!starts.contains(UnsafeMutableRawPointer(third[0].pointer)))
    #expect(pool.keptBytes == 0)
  }

  @Test("a pass that is not reusable empties the pool, and nothing is kept while it lives")
  func largePassesKeepNothing() {
    let pool = GatherPages()
    _ = PageBuffer<Float>.many(3, count: 100, reusable: true, pool: pool)
    #expect(pool.keptBytes == 1200)
    var large = PageBuffer<Float>.many(1, count: 10, reusable: false, pool: pool)
    #expect(pool.keptBytes == 0)
    _ = PageBuffer<Float>.many(1, count: 100, reusable: true, pool: pool)
    #expect(pool.keptBytes == 0)
    large = []
    #expect(large.isEmpty && pool.keptBytes == 0)
    _ = PageBuffer<Float>.many(1, count: 100, reusable: true, pool: pool)
    #expect(pool.keptBytes == 400)
    pool.empty()
    #expect(pool.keptBytes == 0)
  }

  @Test("making room unmaps the largest kept mappings until enough bytes are free")
  func makeRoomEvictsLargestFirst() {
    let pool = GatherPages()
    var buffers = [100, 400, 200].flatMap {
      PageBuffer<Float>.many(1, count: $0, reusable: true, pool: pool)
    }
    buffers = []
    #expect(buffers.isEmpty && pool.keptBytes == 2800)
    pool.makeRoom(0)
    #expect(pool.keptBytes == 2800)
    pool.makeRoom(1000)
    #expect(pool.keptBytes == 1200)
    pool.makeRoom(1)
    #expect(pool.keptBytes == 400)
    pool.makeRoom(10_000)
    #expect(pool.keptBytes == 0)
  }

  @Test("released pages of a buffer read as zeros; the rest keep their values")
  func releaseZeroesWholePages() {
    let pool = GatherPages()
    let buffer = PageBuffer<Float>.many(1, count: 4096, reusable: true, pool: pool)[0]
    for i in 0..<4096 { buffer.pointer[i] = 1 }
    buffer.release(1024..<3072)
    #expect((0..<1024).allSatisfy { buffer.pointer[$0] == 1 })
    #expect((1024..<3072).allSatisfy { buffer.pointer[$0] == 0 })
    #expect((3072..<4096).allSatisfy { buffer.pointer[$0] == 1 })
  }
}
